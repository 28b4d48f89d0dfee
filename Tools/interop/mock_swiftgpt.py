#!/usr/bin/env python3
"""A stand-in for the three swiftgpt commands check_export.py calls, computed with Hugging Face
(used by selftest.py only; RUN is a Hugging Face directory here):

  tokenizer encode --tokenizer FILE --text T --json                       -> {"ids": [...]}
  generate --model RUN --prompt T --temperature 0 --max-tokens N --json   -> {"text","ids","finish_reason",...}
  eval --model RUN --task perplexity --data FILE --json                   -> {"loss","perplexity","bits_per_byte",...}

MOCK_SWIFTGPT_BREAK=encode|generate|loss makes the answer wrong, to test that the checker notices.
"""

import json
import math
import os
import sys


def option(args, name, default=None):
    return args[args.index(name) + 1] if name in args else default


def main() -> int:
    args = sys.argv[1:]
    broken = os.environ.get("MOCK_SWIFTGPT_BREAK", "")
    if args[:2] == ["tokenizer", "encode"]:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(option(args, "--tokenizer"))
        ids = tok.encode(option(args, "--text"), add_special_tokens=False).ids
        if broken == "encode" and len(ids) > 1:
            ids = ids[::-1]
        print(json.dumps({"ids": ids}))
        return 0

    import torch
    from transformers import AutoModelForCausalLM
    from tokenizers import Tokenizer

    torch.set_num_threads(1)
    run = option(args, "--model")
    model = AutoModelForCausalLM.from_pretrained(run, dtype=torch.float32, attn_implementation="eager").eval()
    tok = Tokenizer.from_file(os.path.join(run, "tokenizer.json"))
    eot = tok.token_to_id("<|endoftext|>")
    ctx = getattr(model.config, "n_positions", None) or model.config.max_position_embeddings

    if args[0] == "generate":
        prompt = tok.encode(option(args, "--prompt"), add_special_tokens=False).ids
        seq, out, logprobs, reason = list(prompt), [], [], "length"
        for _ in range(int(option(args, "--max-tokens", "64"))):
            if len(seq) >= ctx:
                reason = "context"
                break
            with torch.no_grad():
                logits = model(torch.tensor([seq])).logits[0, -1].double()
            token = int(torch.argmax(logits))
            if token == eot:
                reason = "stop"
                break
            logprobs.append(round(float(torch.log_softmax(logits, -1)[token]), 6))
            out.append(token)
            seq.append(token)
        if broken == "generate" and len(out) > 3:
            out[3] = (out[3] + 1) % model.config.vocab_size
        print("generated")  # noise before the JSON line, as a real CLI may print
        print(json.dumps({"text": tok.decode(out), "ids": out, "finish_reason": reason,
                          "prompt_tokens": len(prompt), "logprobs": logprobs}))
        return 0

    if args[0] == "eval":
        text = open(option(args, "--data"), encoding="utf-8").read()
        ids = tok.encode(text, add_special_tokens=False).ids
        total, count = 0.0, 0
        for start in range(0, len(ids) - 1, ctx):  # consecutive windows of the context
            window = ids[start: start + ctx + 1]
            x = torch.tensor([window])
            with torch.no_grad():
                logits = model(x[:, :-1]).logits[0].double()
            total += float(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum"))
            count += len(window) - 1
        loss = total / count + (0.01 if broken == "loss" else 0.0)
        n_bytes = len(text.encode("utf-8"))
        print(json.dumps({"loss": loss, "perplexity": math.exp(loss), "bits_per_byte": total / math.log(2) / n_bytes,
                          "tokens": count, "bytes": n_bytes}))
        return 0

    print(f"mock swiftgpt: unsupported command {args}", file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main())
