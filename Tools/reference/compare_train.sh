#!/usr/bin/env bash
# Side-by-side training throughput: SwiftGPT against PyTorch (bench_torch.py) on the same machine,
# in one run, alternating so both see the same machine state. Prints one line per run and the
# ratio of medians per config.
#
#   Tools/reference/compare_train.sh [config ...]      (default: char-baby char-small gpt2-124m; also llama-small)
#   REPEATS=3 Tools/reference/compare_train.sh char-small
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEATS=${REPEATS:-2}
CONFIGS=("$@")
[ ${#CONFIGS[@]} -eq 0 ] && CONFIGS=(char-baby char-small gpt2-124m)
swift build -c release --product swiftgpt >/dev/null
BIN=.build/release/swiftgpt
OUT=$(mktemp -d)
for config in "${CONFIGS[@]}"; do
    case $config in
        char-baby) steps=20 ;; char-small) steps=3 ;; *) steps=1 ;;
    esac
    for r in $(seq "$REPEATS"); do
        $BIN bench train --config "$config" --steps "$steps" --json | tail -1 | tee -a "$OUT/swift-$config.jsonl"
        python3 Tools/reference/bench_torch.py --config "$config" --steps "$steps" --warmup 1 --json | tail -1 \
            | tee -a "$OUT/torch-$config.jsonl"
    done
done
python3 - "$OUT" "${CONFIGS[@]}" <<'PY'
import json, statistics, sys
out, configs = sys.argv[1], sys.argv[2:]
for c in configs:
    s = [json.loads(l) for l in open(f"{out}/swift-{c}.jsonl")]
    t = [json.loads(l) for l in open(f"{out}/torch-{c}.jsonl")]
    ms = statistics.median(x["tokens_per_sec"] for x in s)
    mt = statistics.median(x["tokens_per_sec"] for x in t)
    print(f"{c}: SwiftGPT {ms:.0f} tok/s, PyTorch {mt:.0f} tok/s, ratio {ms / mt:.2f}x "
          f"(MFU {statistics.median(x['mfu'] for x in s) * 100:.0f}%, peak RSS {max(x['peak_rss_mb'] for x in s):.0f} vs "
          f"{max(x['peak_rss_mb'] for x in t):.0f} MiB)")
PY
