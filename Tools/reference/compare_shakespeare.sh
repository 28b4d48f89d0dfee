#!/usr/bin/env bash
# nanoGPT's CPU shakespeare_char run (4 layers, 4 heads, width 128, context 64, batch 12, 2000
# iterations, lr 1e-3 -> 1e-4 cosine after 100 warm-up steps, betas 0.9/0.99, weight decay 0.1,
# clip 1.0, dropout 0) with SwiftGPT and with PyTorch (train_torch.py), one after the other on the
# same machine. Neither samples text during training. Prints val loss and wall time of each.
#   Tools/reference/compare_shakespeare.sh [seed ...]     (default: 1337)
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=("$@"); [ ${#SEEDS[@]} -eq 0 ] && SEEDS=(1337)
swift build -c release --product swiftgpt >/dev/null
BIN=.build/release/swiftgpt
DATA=$(mktemp -d)/shakespeare_char
$BIN prepare --input ../shared/data/pretrain/tinyshakespeare_train.txt --output "$DATA" --char >/dev/null
for seed in "${SEEDS[@]}"; do
    RUN=$(mktemp -d)/run
    start=$(date +%s.%N)
    line=$($BIN train --data "$DATA" --out "$RUN" --seed "$seed" --sample-tokens 0 2>/dev/null | tail -1)
    end=$(date +%s.%N)
    echo "swiftgpt seed $seed: $(echo "$end - $start" | bc) s wall; $line"
    python3 Tools/reference/train_torch.py --data "$DATA" --seed "$seed" --json 2>/dev/null | tail -1
done
