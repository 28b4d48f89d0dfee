#!/usr/bin/env bash
# nanoGPT's CPU shakespeare_char run (4 layers, 4 heads, width 128, context 64, batch 12, 2000
# iterations, lr 1e-3 -> 1e-4 cosine after 100 warm-up steps, betas 0.9/0.99, weight decay 0.1,
# clip 1.0, dropout 0) with SwiftGPT and with PyTorch (train_torch.py), one after the other on the
# same machine, taking turns going first. Neither samples text during training. Prints val loss
# and wall time of each.
#   Tools/reference/compare_shakespeare.sh [seed ...]     (default: 1337)
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=("$@"); [ ${#SEEDS[@]} -eq 0 ] && SEEDS=(1337)
if ! python3 -c "import torch, transformers" 2>/dev/null; then
    echo "compare_shakespeare.sh: the PyTorch side needs torch and transformers: pip install torch transformers" >&2
    exit 1
fi
swift build -c release --product swiftgpt >/dev/null
BIN=.build/release/swiftgpt
DATA=$(mktemp -d)/shakespeare_char
$BIN prepare --input ../shared/data/pretrain/tinyshakespeare_train.txt --output "$DATA" --char >/dev/null
run_swift() {
    local seed=$1 run start end line
    run=$(mktemp -d)/run
    start=$(date +%s.%N)
    line=$($BIN train --data "$DATA" --out "$run" --seed "$seed" --sample-tokens 0 2>/dev/null | tail -1)
    end=$(date +%s.%N)
    echo "swiftgpt seed $seed: $(echo "$end - $start" | bc) s wall; $line"
}
run_torch() {
    local log
    log=$(mktemp)
    if ! python3 Tools/reference/train_torch.py --data "$DATA" --seed "$1" --json 2>"$log" | tail -1; then
        echo "train_torch.py failed (seed $1):" >&2; tail -5 "$log" >&2; exit 1
    fi
}
# The two sides take turns going first (first seed: SwiftGPT then PyTorch, second: PyTorch then
# SwiftGPT, ...), so a machine that slows down or speeds up during the runs favours neither.
i=0
for seed in "${SEEDS[@]}"; do
    if (( i % 2 == 0 )); then run_swift "$seed"; run_torch "$seed"; else run_torch "$seed"; run_swift "$seed"; fi
    i=$((i + 1))
done
