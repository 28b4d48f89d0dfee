#!/usr/bin/env python3
"""Generate tiny Hugging Face checkpoints for SwiftGPT's HF-interop (loader) tests.

Writes under Tests/InteropTests/Fixtures/hf/:
  * llama/              LlamaForCausalLM (GQA, RoPE, RMSNorm, SwiGLU), float32 safetensors
  * gpt2/               GPT2LMHeadModel (tied embeddings), float32 safetensors
  * llama_bf16/         the same llama weights in bfloat16
  * llama_sharded_f16/  the same llama weights in float16, two shards + model.safetensors.index.json
  * reference.safetensors  inputs / targets, llama logits + mean CE loss + all gradients,
                           gpt2 logits, logits of the bf16-rounded llama, greedy continuations.

Every model directory is what `save_pretrained` writes (config.json, generation_config.json,
safetensors) plus the same tiny byte-level BPE tokenizer (tokenizer.json, vocab exactly 300,
trained here with HF `tokenizers` on the English text below) and a minimal
tokenizer_config.json. Reference tensors are float32 (ids int32), computed in float32
with the models in eval mode. Deterministic: torch.manual_seed(2027), one thread.
"""
import argparse
import copy
import json
import os
import shutil
import struct
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

SEED = 2027
VOCAB = 300
EOT = "<|endoftext|>"
B, T = 2, 16
PROMPT_LEN, NEW_TOKENS = 8, 12
# Weight init std for every matrix: 1/sqrt(hidden) keeps activations, attention scores and
# logits O(1) (HF's default 0.02 gives near-uniform attention, which would hide RoPE / mask bugs).
INIT_STD = 0.125
NORM_WEIGHT_NOISE = 0.1  # RMSNorm / LayerNorm weights: 1 + N(0, 0.1)
BIAS_NOISE = 0.02        # every bias (GPT-2): N(0, 0.02) instead of 0
SHARD_SIZE = "150KB"     # gives exactly two float16 shards for this llama

LLAMA = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=32,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    attention_bias=False,
    mlp_bias=False,
    hidden_act="silu",
    initializer_range=INIT_STD,
)
GPT2 = dict(
    vocab_size=VOCAB,
    n_positions=32,
    n_embd=64,
    n_layer=2,
    n_head=4,
    activation_function="gelu_new",
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
    summary_first_dropout=0.0,
    layer_norm_epsilon=1e-5,
    tie_word_embeddings=True,
    initializer_range=INIT_STD,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "Tests" / "InteropTests" / "Fixtures" / "hf"

# Training text for the tokenizer (written for this fixture; ~3.3 KB).
CORPUS = [
    """The little lighthouse stood at the end of a long stone pier. Every evening the keeper
climbed the narrow stairs, wound the old clock, and lit the lamp. Ships far out at sea saw
the light turning and knew where the rocks were hidden. The keeper did not mind the wind or
the rain. He liked the sound of the waves against the wall, and he liked the quiet hours
before the sun came up, when the sea was grey and the gulls were still asleep.""",
    """On Saturday morning Anna and her brother went to the market with their grandmother.
They bought apples, bread, cheese and a small jar of honey. The man who sold the honey
kept bees in the hills behind the town, and he told them that a single bee visits hundreds
of flowers in one day. Anna asked how the bees find their way home. The man smiled and said
that they remember the shape of the hills and the position of the sun.""",
    """A recipe for a simple soup: wash and chop two onions, three carrots and a handful of
potatoes. Warm a spoon of oil in a large pot, add the onions and stir them until they are
soft. Add the carrots and the potatoes, pour in enough water to cover them, and add a pinch
of salt. Let the soup cook slowly for twenty minutes. Taste it, add pepper if you like, and
serve it hot with fresh bread.""",
    """The train left the station at seven o'clock. Through the window the passengers watched
the city give way to fields, then to forests, then to mountains covered in snow. A child
pressed her nose against the glass and counted the tunnels: one, two, three, four. Her
father was reading a newspaper, and her mother was writing a letter to a friend who lived
by the sea. When the train stopped at a small village, a woman with a basket of flowers got
on and sat down next to them.""",
    """Scientists measure the temperature of the ocean at many depths. Warm water near the
surface moves heat from the tropics toward the poles, while cold water sinks and flows back
along the bottom. These currents change the weather on land, bring food to fish and birds,
and carry small animals across great distances. Without them, many coasts would be much
colder in winter and much warmer in summer.""",
    """The old library had tall windows and wooden shelves that reached the ceiling. Students
came in the afternoon to study, and the librarian knew most of them by name. She kept a
list of the books that were borrowed most often: stories about dragons, atlases of the
world, and a thick book about the history of the stars. On rainy days the reading room was
full, and the only sounds were the turning of pages and the tapping of the rain.""",
    """When you learn to ride a bicycle, the hardest part is the beginning. You push the pedal,
the wheel turns, and for a moment you are sure that you will fall. Then you move a little
faster, and the bicycle seems to hold itself up. You look ahead instead of down, and the
road opens in front of you. After that you do not think about balance at all; you think
about where you want to go.""",
    """In the garden behind the house there was a pear tree, a row of tomatoes, and a bed of
herbs: mint, basil, thyme and parsley. Every summer the family picked the pears and made
jam. The children were allowed to stir the pot, and the kitchen smelled sweet for days.
In the autumn the leaves turned yellow and fell, and in the winter the tree stood bare and
patient, waiting for the spring.""",
]


# ---------------------------------------------------------------------------------------------
# Tokenizer


def train_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    assert tok.get_vocab_size(with_added_tokens=True) == VOCAB, tok.get_vocab_size()
    eot = tok.token_to_id(EOT)
    assert eot is not None and eot < VOCAB
    sample = "The keeper lit the lamp, and the ships saw the light."
    assert tok.decode(tok.encode(sample).ids) == sample
    return tok


def write_tokenizer(tok: Tokenizer, directory: Path, max_len: int) -> None:
    tok.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT,
        "eos_token": EOT,
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_len,
    }
    with open(directory / "tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")


# ---------------------------------------------------------------------------------------------
# Models


def eager(model_cls, cfg):
    try:
        return model_cls(cfg, attn_implementation="eager")
    except TypeError:
        cfg._attn_implementation = "eager"
        return model_cls(cfg)


def build_llama(eot: int) -> LlamaForCausalLM:
    cfg = LlamaConfig(**LLAMA, rope_scaling=None, bos_token_id=eot, eos_token_id=eot, pad_token_id=None)
    model = eager(LlamaForCausalLM, cfg)  # HF init: N(0, INIT_STD) matrices, RMSNorm weights 1
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                assert torch.all(p == 1)
                p.add_(torch.randn_like(p) * NORM_WEIGHT_NOISE)
    return model.float().eval()


def build_gpt2(eot: int) -> GPT2LMHeadModel:
    cfg = GPT2Config(**GPT2, bos_token_id=eot, eos_token_id=eot)
    model = eager(GPT2LMHeadModel, cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() != 1:
                continue
            if ".ln_" in name and name.endswith(".weight"):
                p.add_(torch.randn_like(p) * NORM_WEIGHT_NOISE)
            else:  # LayerNorm biases and all Conv1D biases
                p.add_(torch.randn_like(p) * BIAS_NOISE)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr(), "lm_head not tied"
    return model.float().eval()


def save_model(model, directory: Path, tok: Tokenizer, **kwargs) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    model.save_pretrained(str(directory), safe_serialization=True, **kwargs)
    write_tokenizer(tok, directory, model.config.max_position_embeddings
                    if hasattr(model.config, "max_position_embeddings") else model.config.n_positions)


def reload(model_cls, directory: Path, dtype):
    return model_cls.from_pretrained(str(directory), dtype=dtype, attn_implementation="eager").eval()


def greedy(model, prompt: torch.Tensor) -> torch.Tensor:
    """Plain argmax continuation (full recompute, no EOS handling); checked against generate()."""
    ids = prompt.clone()
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            nxt = model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
        out = model.generate(
            prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
            max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, eos_token_id=None,
            pad_token_id=model.config.eos_token_id,
        )
    new = ids[:, prompt.shape[1]:]
    assert torch.equal(out[:, prompt.shape[1]:], new), (out, ids)
    return new


def greedy_margin(model, prompt: torch.Tensor, new: torch.Tensor) -> float:
    """Smallest top-1 minus top-2 logit gap over the greedy steps."""
    ids = torch.cat([prompt, new], dim=1)
    with torch.no_grad():
        logits = model(input_ids=ids[:, :-1]).logits[0, prompt.shape[1] - 1:]
    top2 = logits.topk(2, dim=-1).values
    return float((top2[:, 0] - top2[:, 1]).min())


# ---------------------------------------------------------------------------------------------
# Output


def write_safetensors(path: Path, tensors: dict, metadata: dict) -> None:
    """Write a safetensors file with keys in sorted order so the bytes are reproducible."""
    codes = {torch.float32: "F32", torch.int32: "I32"}
    header = {"__metadata__": dict(sorted(metadata.items()))}
    chunks, pos = [], 0
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        raw = t.numpy().tobytes()  # numpy on x86/arm is little-endian, as the format requires
        header[key] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [pos, pos + len(raw)]}
        chunks.append(raw)
        pos += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * ((8 - len(head) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for raw in chunks:
            f.write(raw)


def f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().float().contiguous().clone()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()
    tok = train_tokenizer()
    eot = tok.token_to_id(EOT)

    torch.manual_seed(SEED)
    llama = build_llama(eot)
    gpt2 = build_gpt2(eot)
    inputs = torch.randint(0, VOCAB, (B, T))
    targets = torch.randint(0, VOCAB, (B, T))

    # ---- checkpoints
    save_model(llama, out_dir / "llama", tok)
    save_model(gpt2, out_dir / "gpt2", tok)
    save_model(copy.deepcopy(llama).to(torch.bfloat16), out_dir / "llama_bf16", tok)
    save_model(copy.deepcopy(llama).to(torch.float16), out_dir / "llama_sharded_f16", tok,
               max_shard_size=SHARD_SIZE)
    shards = sorted(p.name for p in (out_dir / "llama_sharded_f16").glob("*.safetensors"))
    assert shards == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"], shards
    assert (out_dir / "llama_sharded_f16" / "model.safetensors.index.json").exists()

    # ---- reference values (float32)
    ref = {"inputs": inputs.to(torch.int32), "targets": targets.to(torch.int32)}

    params = dict(llama.named_parameters())
    llama.zero_grad(set_to_none=True)
    logits = llama(input_ids=inputs).logits
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
    loss.backward()
    ref["llama.logits"] = f32(logits)
    ref["llama.loss"] = f32(loss.reshape(1))
    for name, p in params.items():
        ref["llama.grad." + name] = f32(p.grad)
    llama.zero_grad(set_to_none=True)

    with torch.no_grad():
        g_logits = gpt2(input_ids=inputs).logits
        g_loss = F.cross_entropy(g_logits.reshape(-1, VOCAB), targets.reshape(-1))
    ref["gpt2.logits"] = f32(g_logits)
    ref["gpt2.loss"] = f32(g_loss.reshape(1))

    # bf16 checkpoint widened to float32 on load, run in float32
    llama_bf16 = reload(LlamaForCausalLM, out_dir / "llama_bf16", torch.float32)
    for name, p in llama_bf16.named_parameters():
        assert p.dtype == torch.float32
        assert torch.equal(p, params[name].detach().to(torch.bfloat16).float()), name
    with torch.no_grad():
        ref["llama_bf16.logits"] = f32(llama_bf16(input_ids=inputs).logits)

    prompt = inputs[:1, :PROMPT_LEN]
    ref["llama.greedy"] = greedy(llama, prompt).to(torch.int32)
    ref["gpt2.greedy"] = greedy(gpt2, prompt).to(torch.int32)

    # ---- round-trip checks of the saved checkpoints
    with torch.no_grad():
        back = reload(LlamaForCausalLM, out_dir / "llama", torch.float32)
        assert torch.equal(back(input_ids=inputs).logits, ref["llama.logits"])
        back = reload(GPT2LMHeadModel, out_dir / "gpt2", torch.float32)
        assert torch.equal(back(input_ids=inputs).logits, ref["gpt2.logits"])
        back = reload(LlamaForCausalLM, out_dir / "llama_sharded_f16", torch.float16)
        for name, p in back.named_parameters():
            assert torch.equal(p, params[name].detach().to(torch.float16)), name
    for d in ("llama", "gpt2", "llama_bf16", "llama_sharded_f16"):
        hf_tok = Tokenizer.from_file(str(out_dir / d / "tokenizer.json"))
        assert hf_tok.get_vocab_size() == VOCAB and hf_tok.token_to_id(EOT) == eot

    metadata = {
        "llama_config": json.dumps(LLAMA, sort_keys=True),
        "gpt2_config": json.dumps(GPT2, sort_keys=True),
        "setup": json.dumps({"B": B, "T": T, "seed": SEED, "eot_id": eot, "prompt_len": PROMPT_LEN,
                             "new_tokens": NEW_TOKENS, "init_std": INIT_STD,
                             "norm_weight_noise": NORM_WEIGHT_NOISE, "bias_noise": BIAS_NOISE},
                            sort_keys=True),
        "notes": (
            "float32 models in eval mode, float32 math, eager attention. llama.loss / gpt2.loss = mean "
            "cross-entropy of logits vs targets, aligned (no shift). llama.grad.<HF name> = d llama.loss. "
            "llama_bf16.logits: llama weights rounded to bfloat16, widened to float32, run in float32. "
            "*.greedy: the 12 argmax tokens after the prompt inputs[0, :8] (no EOS stopping)."
        ),
        "torch_version": torch.__version__,
    }
    ref_path = out_dir / "reference.safetensors"
    write_safetensors(ref_path, ref, metadata)
    from safetensors.torch import load_file
    loaded = load_file(str(ref_path))
    assert loaded.keys() == ref.keys() and all(torch.equal(loaded[k], ref[k]) for k in ref)

    # ---- summary
    print(f"tokenizer: vocab {tok.get_vocab_size()}, {EOT} = {eot}")
    print(f"llama: {sum(p.numel() for p in params.values())} parameters, loss {loss.item():.6f}, "
          f"logits std {logits.std().item():.3f}, greedy margin {greedy_margin(llama, prompt, ref['llama.greedy']):.4f}")
    print(f"gpt2:  {sum(p.numel() for p in gpt2.parameters())} parameters, loss {g_loss.item():.6f}, "
          f"logits std {g_logits.std().item():.3f}, greedy margin {greedy_margin(gpt2, prompt, ref['gpt2.greedy']):.4f}")
    print(f"llama bf16 vs fp32 logits: max abs diff "
          f"{(ref['llama_bf16.logits'] - ref['llama.logits']).abs().max().item():.4g}")
    print(f"llama.greedy {ref['llama.greedy'].tolist()}  gpt2.greedy {ref['gpt2.greedy'].tolist()}")
    print("reference tensors:")
    for k in sorted(ref):
        print(f"  {k:60s} {str(ref[k].dtype).replace('torch.', ''):8s} {tuple(ref[k].shape)}")
    total = 0
    for path in sorted(out_dir.rglob("*")):
        if path.is_file():
            size = os.path.getsize(path)
            total += size
            print(f"  {size:9d}  {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
