#!/usr/bin/env python3
"""PyTorch peer of `swiftgpt train` (nanoGPT's CPU shakespeare_char run).

Trains a Hugging Face GPT2LMHeadModel (fp32) on a data directory written by
`swiftgpt prepare` with the same hyper-parameters, schedule, batching and
evaluation protocol as `swiftgpt train`, so the two can be timed side by side.

    python3 Tools/reference/train_torch.py --data /tmp/shakespeare_char --json

With --json, the last line of stdout is one JSON object:
    framework, torch_version, iterations, final_train_loss, final_val_loss,
    best_val_loss, seconds, tokens_per_sec, threads (+ final_train_eval_loss, params)
final_train_loss is the last step's training loss (as in swiftgpt's summary);
final_train_eval_loss is the train loss of the last evaluation.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

SHARD_MAGIC = b"SGPTSHRD"
SHARD_HEADER = struct.Struct("<8sIIQQ")  # magic, version, token width, token count, reserved
EVAL_SEED = 0xE7A1  # fixed seed for the evaluation batches (same batches at every evaluation)


def load_shard(path: str) -> torch.Tensor:
    """Reads a SwiftGPT token shard and returns its ids as an int64 tensor."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < SHARD_HEADER.size:
        raise ValueError(f"{path}: too short for a shard header ({len(raw)} bytes)")
    magic, version, width, count, _reserved = SHARD_HEADER.unpack_from(raw, 0)
    if magic != SHARD_MAGIC:
        raise ValueError(f"{path}: bad magic {magic!r} (expected {SHARD_MAGIC!r})")
    if version != 1:
        raise ValueError(f"{path}: unsupported shard version {version}")
    if width not in (2, 4):
        raise ValueError(f"{path}: unsupported token width {width}")
    expected = SHARD_HEADER.size + count * width
    if len(raw) != expected:
        raise ValueError(f"{path}: header says {count} tokens of {width} bytes ({expected} bytes), file has {len(raw)}")
    dtype = np.dtype("<u2") if width == 2 else np.dtype("<i4")
    ids = np.frombuffer(raw, dtype=dtype, count=count, offset=SHARD_HEADER.size)
    return torch.from_numpy(ids.astype(np.int64))


def lr_at(step: int, a) -> float:
    """Learning rate for 0-based step (same formula as swiftgpt's TrainConfig)."""
    if step < a.warmup:
        return a.lr * (step + 1) / (a.warmup + 1)
    progress = min(1.0, (step - a.warmup) / max(1, a.iterations - a.warmup))
    coef = 0.5 * (1 + math.cos(math.pi * progress)) if a.decay == "cosine" else 1 - progress
    return a.min_lr + coef * (a.lr - a.min_lr)


def get_batch(data: torch.Tensor, B: int, T: int, gen: torch.Generator):
    # offsets uniform in [0, len - T - 1] inclusive
    offsets = torch.randint(0, len(data) - T, (B,), generator=gen)
    idx = offsets[:, None] + torch.arange(T)[None, :]
    return data[idx], data[idx + 1]


def main():
    ap = argparse.ArgumentParser(description="PyTorch peer of `swiftgpt train`")
    ap.add_argument("--data", required=True, help="directory written by `swiftgpt prepare`")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--decay", choices=["cosine", "linear"], default="cosine")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.99)
    ap.add_argument("--grad-clip", type=float, default=1.0, help="0 disables clipping")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--eval-every", type=int, default=250, help="0 disables evaluation")
    ap.add_argument("--eval-batches", type=int, default=20)
    ap.add_argument("--max-seconds", type=float, default=0, help="stop after this wall time (then a final evaluation)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa", help="HF attention implementation")
    ap.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    a = ap.parse_args()

    B, T = a.batch_size, a.context
    if min(B, T, a.grad_accum, a.layers, a.heads, a.width) < 1 or a.iterations < 0 or a.width % a.heads:
        ap.error("invalid model / batch sizes (width must be divisible by heads)")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    with open(os.path.join(a.data, "meta.json")) as f:
        meta = json.load(f)
    vocab = int(meta["vocab_size"])
    train = load_shard(os.path.join(a.data, "train.bin"))
    val = load_shard(os.path.join(a.data, "val.bin"))
    for name, data, key in (("train", train, "train_tokens"), ("val", val, "val_tokens")):
        if key in meta and int(meta[key]) != len(data):
            raise ValueError(f"{name}.bin has {len(data)} tokens, meta.json says {meta[key]}")
        if len(data) and int(data.max()) >= vocab:
            raise ValueError(f"{name}.bin has token id {int(data.max())} >= vocab_size {vocab}")
    if len(train) <= T + 1:
        raise ValueError(f"train.bin has {len(train)} tokens, need more than context + 1 = {T + 1}")

    cfg = GPT2Config(
        vocab_size=vocab, n_positions=T, n_embd=a.width, n_layer=a.layers, n_head=a.heads,
        activation_function="gelu_new", layer_norm_epsilon=1e-5,
        resid_pdrop=a.dropout, embd_pdrop=a.dropout, attn_pdrop=a.dropout,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=None,
    )
    try:
        model = GPT2LMHeadModel(cfg, attn_implementation=a.attn)
    except TypeError:  # older transformers
        cfg._attn_implementation = a.attn
        model = GPT2LMHeadModel(cfg)
    model = model.float().train()

    params = list(model.parameters())  # the tied wte / lm_head weight appears once
    n_params = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": a.weight_decay},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=a.lr, betas=(a.beta1, a.beta2), eps=1e-8,
    )

    log = (lambda *m: print(*m, file=sys.stderr, flush=True)) if a.json else (lambda *m: print(*m, flush=True))
    log(f"torch {torch.__version__}, {a.threads} threads | vocab {vocab}, {a.layers} layers, {a.heads} heads, "
        f"width {a.width}, context {T} | {n_params:,} parameters | train {len(train):,} / val {len(val):,} tokens")
    log(f"batch {B} x accum {a.grad_accum} x context {T} = {B * a.grad_accum * T} tokens/step, "
        f"{a.iterations} iterations, lr {a.lr:g} -> {a.min_lr:g} ({a.decay}, warmup {a.warmup})")

    def loss_of(x, y):
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))

    def evaluate(data):
        if len(data) <= T + 1 or a.eval_batches <= 0:
            return None
        gen = torch.Generator().manual_seed(a.seed ^ EVAL_SEED)
        total = 0.0
        model.eval()
        with torch.no_grad():
            for _ in range(a.eval_batches):
                total += loss_of(*get_batch(data, B, T, gen)).item()
        model.train()
        return total / a.eval_batches

    gen = torch.Generator().manual_seed(a.seed)
    tokens_per_step = B * T * a.grad_accum
    last_loss = last_train_eval = last_val = best_val = None
    start = time.perf_counter()
    last_log = 0.0
    for step in range(a.iterations):
        t0 = time.perf_counter()
        lr = lr_at(step, a)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for _ in range(a.grad_accum):
            loss = loss_of(*get_batch(train, B, T, gen)) / a.grad_accum
            loss.backward()
            loss_sum += loss.item()
        if not math.isfinite(loss_sum):
            raise RuntimeError(f"non-finite loss at step {step}")
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
        opt.step()
        last_loss = loss_sum
        done = step + 1
        now = time.perf_counter()
        if now - last_log > 1 or done == a.iterations or done == 1:
            last_log = now
            log(f"step {done}/{a.iterations} | loss {loss_sum:.4f} | lr {lr:.2e} | "
                f"{tokens_per_step / (now - t0):.0f} tok/s | avg {done * tokens_per_step / (now - start):.0f} tok/s")
        out_of_time = a.max_seconds > 0 and now - start >= a.max_seconds
        if a.eval_every > 0 and (done % a.eval_every == 0 or done == a.iterations or out_of_time):
            last_train_eval, last_val = evaluate(train), evaluate(val)
            if last_val is not None and (best_val is None or last_val < best_val):
                best_val = last_val
            fmt = lambda v: "-" if v is None else f"{v:.4f}"
            log(f"eval step {done}: train {fmt(last_train_eval)} | val {fmt(last_val)}")
        if out_of_time:
            break
    seconds = time.perf_counter() - start
    tokens = done * tokens_per_step

    result = {
        "framework": "pytorch",
        "torch_version": torch.__version__,
        "iterations": a.iterations,
        "steps_done": done,
        "final_train_loss": last_loss,  # last step's training loss, as in swiftgpt's summary
        "final_train_eval_loss": last_train_eval,  # train loss from the last evaluation
        "final_val_loss": last_val,
        "best_val_loss": best_val,
        "seconds": seconds,
        "tokens_per_sec": tokens / max(seconds, 1e-9),
        "threads": a.threads,
        "params": n_params,
    }
    log(f"done: {a.iterations} steps in {seconds:.1f} s, {result['tokens_per_sec']:.0f} tok/s | "
        f"last step loss {last_loss} | final train eval {last_train_eval} | final val {last_val} | best val {best_val}")
    if a.json:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
