#!/usr/bin/env python3
"""PyTorch reference benchmark for SwiftGPT training throughput.

Times full training steps (zero_grad, forward + loss, backward,
clip_grad_norm_(1.0), AdamW step) of a randomly initialised Hugging Face
GPT2LMHeadModel on random tokens, for the same model configs SwiftGPT uses.

    python Tools/reference/bench_torch.py --config char-baby
    python Tools/reference/bench_torch.py --config char-small --steps 2 --json

On an NVIDIA GPU (the peer of `swiftgpt bench train --device cuda`), eager and compiled, bf16 autocast:
    python Tools/reference/bench_torch.py --config gpt2-124m --batch 16 --device cuda --dtype bf16 [--compile]
    python Tools/reference/bench_torch.py --config char-small --device cuda --dtype bf16 --compile --steps 20

FLOP accounting (training = forward + backward = 3x forward):
    flops_per_token = 6*N + 6*L*T*C
      N : all parameters except the position embeddings (wte counted once;
          it doubles as the tied lm_head, so the vocab projection is included)
      6*N : 2 flops per multiply-add per weight in the forward pass, x3 for
            forward + backward
      6*L*T*C : attention score/value matmuls under the causal mask: a token
            at position t attends to t keys, i.e. T/2 on average, so the
            forward costs (T/2)*C*2 for QK^T plus (T/2)*C*2 for P@V = 2*T*C
            per layer per token; x3 for forward + backward.
    The "full attention" variant (nanoGPT / PaLM MFU convention, counting the
    whole T x T score matrix as an unmasked kernel does) uses 12*L*T*C and is
    reported as gflops_full_attn.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import transformers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

CONFIGS = {
    "char-baby": dict(vocab=65, layers=4, heads=4, width=128, context=64, batch=12, steps=20),
    "char-small": dict(vocab=65, layers=6, heads=6, width=384, context=256, batch=64, steps=3),
    "gpt2-124m": dict(vocab=50257, layers=12, heads=12, width=768, context=1024, batch=4, steps=2),
    # Llama-style (rope, RMSNorm, SwiGLU 1024, 2 key/value heads, no biases, untied head): SwiftGPT's
    # `--arch llama` at char-small's size.
    "llama-small": dict(vocab=65, layers=6, heads=6, width=384, context=256, batch=64, steps=3, llama=True,
                        kv_heads=2, ffn=1024),
}

FLOPS_FORMULA = (
    "flops_per_token = 6*N + 6*L*T*C; N = all params except wpe (wte counted once, tied lm_head); "
    "6*L*T*C = causal attention QK^T + PV (forward 2*L*T*C with average context T/2) x3 for fwd+bwd; "
    "gflops_full_attn uses 12*L*T*C instead"
)


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS reports bytes.
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def build_model(cfg, attn):
    if cfg.get("llama"):
        hf = LlamaConfig(
            vocab_size=cfg["vocab"], hidden_size=cfg["width"], intermediate_size=cfg["ffn"],
            num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"], num_key_value_heads=cfg["kv_heads"],
            max_position_embeddings=cfg["context"], rms_norm_eps=1e-5, tie_word_embeddings=False,
            attention_bias=False, mlp_bias=False, bos_token_id=None, eos_token_id=None,
        )
        hf._attn_implementation = attn
        return LlamaForCausalLM(hf).float().train()
    hf = GPT2Config(
        vocab_size=cfg["vocab"], n_positions=cfg["context"], n_embd=cfg["width"],
        n_layer=cfg["layers"], n_head=cfg["heads"], activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=None,
    )
    try:
        model = GPT2LMHeadModel(hf, attn_implementation=attn)
    except TypeError:  # older transformers
        hf._attn_implementation = attn
        model = GPT2LMHeadModel(hf)
    return model.float().train()


def main():
    ap = argparse.ArgumentParser(description="PyTorch GPT-2 training-step benchmark")
    ap.add_argument("--config", required=True, choices=sorted(CONFIGS))
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default depends on config)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=None, help="override the config's batch size")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="HF attention implementation")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (an NVIDIA GPU)")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: forward and loss under torch.autocast (fp32 master weights, as SwiftGPT's GPU default)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = ap.parse_args()

    cfg = dict(CONFIGS[args.config])
    if args.batch is not None:
        cfg["batch"] = args.batch
    steps = args.steps if args.steps is not None else cfg["steps"]
    B, T, C, L = cfg["batch"], cfg["context"], cfg["width"], cfg["layers"]

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.dtype != "fp32"
    model = build_model(cfg, args.attn).to(device)
    forward = torch.compile(model) if args.compile else model

    params = [p for p in model.parameters()]  # tied wte/lm_head appears once
    n_params = sum(p.numel() for p in params)
    n_wpe = 0 if cfg.get("llama") else model.transformer.wpe.weight.numel()
    n_flop_params = n_params - n_wpe
    flops_per_token = 6 * n_flop_params + 6 * L * T * C
    flops_per_token_full = 6 * n_flop_params + 12 * L * T * C

    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=3e-4, betas=(0.9, 0.95), eps=1e-8,
    )

    inputs = torch.randint(0, cfg["vocab"], (B, T), device=device)
    targets = torch.randint(0, cfg["vocab"], (B, T), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            logits = forward(input_ids=inputs).logits
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()

    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    log(f"config {args.config}: L={L} H={cfg['heads']} C={C} T={T} V={cfg['vocab']} B={B}; "
        f"params {n_params:,} (flop params {n_flop_params:,}); threads {args.threads}; attn {args.attn}; "
        f"device {args.device}, {args.dtype}{', compiled' if args.compile else ''}")

    for i in range(args.warmup):
        t0 = time.perf_counter()
        loss = step()
        log(f"warmup {i}: loss {loss:.4f}  {1e3 * (time.perf_counter() - t0):.1f} ms")

    times, losses = [], []
    for i in range(steps):
        t0 = time.perf_counter()
        loss = step()
        dt = time.perf_counter() - t0
        times.append(dt)
        losses.append(loss)
        log(f"step {i}: loss {loss:.4f}  {1e3 * dt:.1f} ms")

    tokens = B * T
    med = statistics.median(times)
    mean = statistics.fmean(times)
    tps = tokens / med
    result = {
        "config": args.config,
        "framework": "pytorch",
        "tokens_per_sec": tps,                 # based on the median step time
        "tokens_per_sec_mean": tokens / mean,  # based on the mean step time
        "step_ms": 1e3 * med,
        "step_ms_mean": 1e3 * mean,
        "step_ms_all": [1e3 * t for t in times],
        "gflops": flops_per_token * tps / 1e9,
        "gflops_full_attn": flops_per_token_full * tps / 1e9,
        "flops_per_token": flops_per_token,
        "flops_formula": FLOPS_FORMULA,
        "peak_rss_mb": peak_rss_mb(),
        "threads": args.threads,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "attn_implementation": args.attn,
        "device": args.device, "dtype": args.dtype, "compiled": args.compile,
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "batch": B, "context": T, "layers": L, "heads": cfg["heads"], "width": C, "vocab": cfg["vocab"],
        "params": n_params,
        "steps": steps, "warmup": args.warmup,
        "last_loss": losses[-1] if losses else None,
        "machine": platform.machine(), "cpu_count": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"tokens/s {tps:,.0f} | step {1e3 * med:.1f} ms median, {1e3 * mean:.1f} ms mean | "
              f"{result['gflops']:.1f} GFLOP/s ({result['gflops_full_attn']:.1f} full-attn) | "
              f"peak RSS {result['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
