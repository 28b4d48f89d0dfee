"""Peer benchmark for `swiftgpt bench generate`: Hugging Face `generate` (KV cache on) on the same
GPT-2 configuration, fp32 on the CPU, or on an NVIDIA GPU with --device cuda (--dtype bf16 as in
../shared/GPU.md's reference figures).

Prefill tokens/s: batch × prompt tokens / time of a forward over the prompts (what generate's first
step does). Decode tokens/s: batch × new tokens / (time of generate with max_new_tokens=N, greedy,
EOS disabled, minus the prefill time). Median of --repeats runs, after one warm-up.

    python3 Tools/reference/bench_generate_torch.py --config gpt2-124m --batch 1 [--threads 2] [--json]
    python3 Tools/reference/bench_generate_torch.py --config gpt2-124m --batch 1 --device cuda --dtype bf16
"""
import argparse
import json
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

CONFIGS = {
    "char-baby": dict(vocab_size=65, n_positions=64, n_layer=4, n_head=4, n_embd=128),
    "char-small": dict(vocab_size=65, n_positions=256, n_layer=6, n_head=6, n_embd=384),
    "gpt2-124m": dict(vocab_size=50257, n_positions=1024, n_layer=12, n_head=12, n_embd=768),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="gpt2-124m", choices=sorted(CONFIGS))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (an NVIDIA GPU)")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    args = ap.parse_args()
    device = torch.device(args.device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = GPT2Config(**CONFIGS[args.config], activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, use_cache=True)
    model = GPT2LMHeadModel(cfg).eval().to(device)
    if args.dtype == "bf16":
        model = model.to(torch.bfloat16)
    V = cfg.vocab_size
    prefill, decode = [], []
    with torch.inference_mode():
        for run in range(args.repeats + 1):
            ids = torch.randint(0, V, (args.batch, args.prompt_tokens), device=device)
            mask = torch.ones_like(ids)
            sync()
            t0 = time.perf_counter()
            model(input_ids=ids, attention_mask=mask, use_cache=True)
            sync()
            t1 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens,
                                 min_new_tokens=args.new_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=0, eos_token_id=None)
            sync()
            t2 = time.perf_counter()
            assert out.shape[1] == args.prompt_tokens + args.new_tokens
            if run > 0:
                p = t1 - t0
                prefill.append(args.batch * args.prompt_tokens / p)
                # generate's first step is the prefill (plus its first token); the rest is decode.
                decode.append(args.batch * (args.new_tokens - 1) / max(1e-9, (t2 - t1) - p))
    result = dict(config=args.config, batch=args.batch, prompt_tokens=args.prompt_tokens,
                  new_tokens=args.new_tokens, prefill_tokens_per_sec=statistics.median(prefill),
                  decode_tokens_per_sec=statistics.median(decode), threads=torch.get_num_threads(),
                  torch=torch.__version__, device=args.device, dtype=args.dtype)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.config} batch {args.batch} {args.dtype} on {args.device} (Hugging Face generate): prefill "
              f"{result['prefill_tokens_per_sec']:.0f} tokens/s, decode {result['decode_tokens_per_sec']:.1f} tokens/s")


if __name__ == "__main__":
    main()
