#!/usr/bin/env python3
"""Generate the tiny GPT-2 reference fixture used by SwiftGPT's model tests.

Writes Tests/ModelTests/Fixtures/gpt2_tiny.safetensors containing:
  * the initial parameters of a tiny Hugging Face GPT2LMHeadModel (HF names),
  * fixed inputs / targets / loss weights,
  * logits, mean cross-entropy loss and its gradients,
  * a weighted (masked) loss and its gradients,
  * a 10-step AdamW trajectory (losses, pre-clip grad norms, final params).

All math is done in float64; every tensor is stored as float32 (ids as int32).
Deterministic: torch.manual_seed(1337).
"""
import argparse
import json
import os
import struct
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

SEED = 1337
B, T = 3, 16
CONFIG = dict(
    vocab_size=97,
    n_positions=16,
    n_embd=64,
    n_layer=2,
    n_head=4,
    activation_function="gelu_new",
    resid_pdrop=0.0,
    embd_pdrop=0.0,
    attn_pdrop=0.0,
    layer_norm_epsilon=1e-5,
    tie_word_embeddings=True,
)
NOISE_STD = 0.02
ADAMW = dict(
    lr=1e-3,
    betas=[0.9, 0.95],
    eps=1e-8,
    weight_decay_matrices=0.1,  # params with dim >= 2 (wte, wpe, all weight matrices)
    weight_decay_vectors=0.0,   # biases and LayerNorm params
    clip_grad_norm=1.0,
    steps=10,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "Tests" / "ModelTests" / "Fixtures" / "gpt2_tiny.safetensors"


def build_model() -> GPT2LMHeadModel:
    # bos/eos ids are irrelevant here; HF defaults (50256) are outside the tiny vocab.
    cfg = GPT2Config(**CONFIG, bos_token_id=None, eos_token_id=None)
    try:
        model = GPT2LMHeadModel(cfg, attn_implementation="eager")
    except TypeError:
        cfg._attn_implementation = "eager"
        model = GPT2LMHeadModel(cfg)
    model.eval()  # dropout is 0 anyway; eval makes it explicit
    # Perturb every 1-D parameter (LayerNorm weight/bias, all biases) so that
    # they are not exactly 1 / 0 and bias / LN bugs show up in the tests.
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * NOISE_STD)
    return model.double()


def param_dict(model):
    """Trainable parameters under their HF names (tied lm_head appears once, as wte)."""
    params = dict(model.named_parameters())
    params.pop("lm_head.weight", None)
    assert "transformer.wte.weight" in params
    assert model.lm_head.weight.data_ptr() == params["transformer.wte.weight"].data_ptr(), "lm_head not tied"
    return params


def per_token_ce(model, inputs, targets):
    logits = model(input_ids=inputs).logits  # (B, T, V), no shifting: targets are aligned
    ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    return logits, ce.view(targets.shape)


def write_safetensors(path: Path, tensors: dict, metadata: dict) -> None:
    """Minimal safetensors writer with a canonical (sorted) header so that the
    output is byte-for-byte reproducible (safetensors.save_file emits the
    metadata map in hash order, which changes from run to run)."""
    dtypes = {torch.float32: "F32", torch.int32: "I32"}
    header = {"__metadata__": {k: metadata[k] for k in sorted(metadata)}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        data = t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes(order="C")
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # pad header to a multiple of 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def f32(t):
    return t.detach().to(torch.float32).contiguous().clone()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # fully deterministic reductions
    model = build_model()
    params = param_dict(model)
    names = list(params.keys())
    V = CONFIG["vocab_size"]

    inputs = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    keep = (torch.rand(B, T) >= 1.0 / 3.0).double()
    weights = keep / keep.sum()

    out = {
        "inputs": inputs.to(torch.int32),
        "targets": targets.to(torch.int32),
        "weights": f32(weights),
    }
    for n in names:
        out[n] = f32(params[n])

    # 1) plain forward / mean loss / gradients
    model.zero_grad(set_to_none=True)
    logits, ce = per_token_ce(model, inputs, targets)
    loss = ce.mean()
    loss.backward()
    out["logits"] = f32(logits)
    out["loss"] = f32(loss.reshape(1))
    for n in names:
        out["grad." + n] = f32(params[n].grad)

    # 2) weighted / masked loss
    model.zero_grad(set_to_none=True)
    _, ce = per_token_ce(model, inputs, targets)
    loss_w = (weights * ce).sum()
    loss_w.backward()
    out["loss_weighted"] = f32(loss_w.reshape(1))
    for n in names:
        out["grad_weighted." + n] = f32(params[n].grad)
    model.zero_grad(set_to_none=True)

    # 3) AdamW trajectory from the initial parameters
    decay = [params[n] for n in names if params[n].dim() >= 2]
    no_decay = [params[n] for n in names if params[n].dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": ADAMW["weight_decay_matrices"]},
            {"params": no_decay, "weight_decay": ADAMW["weight_decay_vectors"]},
        ],
        lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]), eps=ADAMW["eps"],
        foreach=False, fused=False,
    )
    all_params = [params[n] for n in names]
    losses, norms = [], []
    for _ in range(ADAMW["steps"]):
        opt.zero_grad(set_to_none=True)
        _, ce = per_token_ce(model, inputs, targets)
        l = ce.mean()
        l.backward()
        gn = torch.nn.utils.clip_grad_norm_(all_params, ADAMW["clip_grad_norm"])
        opt.step()
        losses.append(l.item())
        norms.append(float(gn))
    out["adamw_losses"] = torch.tensor(losses, dtype=torch.float32)
    out["adamw_grad_norms"] = torch.tensor(norms, dtype=torch.float32)
    for n in names:
        out["final." + n] = f32(params[n])

    metadata = {
        "config": json.dumps(CONFIG, sort_keys=True),
        "adamw": json.dumps(ADAMW, sort_keys=True),
        "inputs": json.dumps({"B": B, "T": T, "seed": SEED, "param_noise_std": NOISE_STD}),
        "notes": (
            "Computed in float64, stored as float32. loss = mean CE over all B*T tokens "
            "(targets aligned with inputs, no shift). loss_weighted = sum(weights * CE). "
            "Weights in HF Conv1D (in, out) layout. lm_head.weight is tied to transformer.wte.weight; "
            "grad.transformer.wte.weight includes the lm_head contribution. adamw_losses[i] is the loss "
            "before step i; adamw_grad_norms[i] is the global L2 grad norm before clipping."
        ),
        "torch_version": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(args.out, out, metadata)
    # Sanity check: the file must round-trip through the official reader.
    from safetensors.torch import load_file
    back = load_file(str(args.out))
    assert back.keys() == out.keys() and all(torch.equal(back[k], out[k]) for k in out)

    print(f"parameters: {len(names)} tensors, {sum(p.numel() for p in all_params)} elements")
    print(f"loss          = {loss.item():.10f}")
    print(f"loss_weighted = {loss_w.item():.10f}  (nonzero weights: {int(keep.sum())}/{B*T})")
    for i, (l, g) in enumerate(zip(losses, norms)):
        print(f"adamw step {i}: loss {l:.10f}  grad_norm {g:.10f}")
    print(f"final loss after 10 steps = {per_token_ce(model, inputs, targets)[1].mean().item():.10f}")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes, {len(out)} tensors)")


if __name__ == "__main__":
    main()
