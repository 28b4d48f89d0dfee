#!/usr/bin/env bash
# The end-to-end checks of `swiftgpt serve` for CI: a tiny model trained in seconds (debug build),
# then the official openai client against the server (Tools/serve/e2e_openai.py) and headless
# Chromium against the chat page (Tools/serve/browser_test.py, screenshot kept as an artefact).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${SWIFTGPT_BIN:-.build/debug/swiftgpt}
WORK=${SERVE_CI_DIR:-/tmp/swiftgpt-serve-ci}
rm -rf "$WORK" && mkdir -p "$WORK"

[ -n "${SWIFTGPT_BIN:-}" ] || swift build --product swiftgpt 2>&1 | tail -1
# A 1-layer model on tinyshakespeare's first lines: enough for the API to be exercised for real.
head -c 200000 ../shared/data/pretrain/tinyshakespeare_train.txt > "$WORK/text.txt" 2>/dev/null \
    || python3 -c "import sys; sys.stdout.write(('First Citizen:\nBefore we proceed any further, hear me speak.\n\n' * 2000))" > "$WORK/text.txt"
"$BIN" tokenizer train --input "$WORK/text.txt" --vocab-size 320 --output "$WORK/tokenizer.json" --threads 1
"$BIN" prepare --input "$WORK/text.txt" --output "$WORK/data" --tokenizer "$WORK/tokenizer.json"
"$BIN" train --data "$WORK/data" --out "$WORK/tiny" --layers 1 --heads 2 --width 32 --context 96 --batch-size 4 \
    --iterations 20 --eval-every 20 --eval-batches 1 --sample-tokens 0

python3 -m pip install -q openai selenium
python3 Tools/serve/e2e_openai.py --binary "$BIN" --model "$WORK/tiny" --api-key ci-key --skip raw_huge_body_conn_close

if ! command -v chromedriver >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
fi
python3 Tools/serve/browser_test.py --binary "$BIN" --model "$WORK/tiny" --screenshot "$WORK/chat-page.png"
echo "serve e2e: passed (screenshot: $WORK/chat-page.png)"
