#!/usr/bin/env bash
# The CUDA checks a machine without a GPU can run, for CI:
#  1. every kernel compiled to real sm_90 PTX by NVRTC from PyPI's nvidia-cuda-nvrtc wheel (a kernel
#     that does not compile fails CI);
#  2. the CLI end to end with `--device cuda` on the CPU emulator (Tools/cuda/emulator): train a tiny
#     model for a few steps on each device and compare the losses, then greedy `generate` of one model on
#     each device and compare the token ids. The emulator keeps device memory unreadable by the host, so any place in
#     the trainer, checkpointing, sampling or the engine that touches device memory directly crashes here.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${SWIFTGPT_BIN:-.build/debug/swiftgpt}
WORK=${CUDA_CI_DIR:-/tmp/swiftgpt-cuda-ci}
rm -rf "$WORK" && mkdir -p "$WORK"
[ -n "${SWIFTGPT_BIN:-}" ] || swift build --product swiftgpt 2>&1 | tail -1

# 1. NVRTC from PyPI (no GPU needed to compile) and the PTX test.
python3 -m pip install -q --target "$WORK/py" nvidia-cuda-nvrtc
NVRTC_LIB=$(ls -d "$WORK"/py/nvidia/cu13/lib 2>/dev/null || ls -d "$WORK"/py/nvidia/cuda_nvrtc/lib)
echo "NVRTC: $NVRTC_LIB"
SWIFTGPT_CUDA_LIB_PATH="$NVRTC_LIB" swift test --filter CUDATests.CUDALoaderTests/testKernelSourceCompilesToPTXWithNVRTC \
    2>&1 | tee "$WORK/ptx.log" | grep -E "Test Case|Executed" | head -3
if grep -q "skipped" "$WORK/ptx.log" || ! grep -q "Executed 1 test, with 0 failures" "$WORK/ptx.log"; then
    echo "the PTX check did not run and pass (NVRTC from $NVRTC_LIB); see $WORK/ptx.log" >&2
    exit 1
fi

# 2. The CLI on the emulator against the CPU.
Tools/cuda/emulator/build.sh "$WORK/emu"
export SGEMU_CACHE_DIR="$WORK/emu-cache"
head -c 20000 ../shared/data/pretrain/tinyshakespeare_train.txt > "$WORK/text.txt" 2>/dev/null \
    || python3 -c "import sys; sys.stdout.write('First Citizen:\nBefore we proceed any further, hear me speak.\n\n' * 300)" > "$WORK/text.txt"
"$BIN" prepare --input "$WORK/text.txt" --output "$WORK/data" --char
for device in cpu cuda; do
    SWIFTGPT_CUDA_EMULATOR="$WORK/emu/libcudaemu.so" "$BIN" train --device "$device" --data "$WORK/data" \
        --out "$WORK/run-$device" --layers 1 --heads 2 --width 32 --context 16 --batch-size 8 --iterations 16 \
        --lr 1e-2 --warmup 2 --eval-every 8 --eval-batches 2 --sample-tokens 8 --seed 3 --dropout 0.1
done
# Generation on each device from the same (CPU-trained) weights, greedy and seeded sampling; the
# CUDA-written checkpoint must load too.
for device in cpu cuda; do
    SWIFTGPT_CUDA_EMULATOR="$WORK/emu/libcudaemu.so" "$BIN" generate --device "$device" --model "$WORK/run-cpu" \
        --prompt "First Citizen:" --max-tokens 12 --temperature 0 --json | tail -1 > "$WORK/generate-$device.json"
    SWIFTGPT_CUDA_EMULATOR="$WORK/emu/libcudaemu.so" "$BIN" generate --device "$device" --model "$WORK/run-cpu" \
        --prompt "First Citizen:" --max-tokens 24 --temperature 1 --seed 5 --json | tail -1 > "$WORK/sample-$device.json"
done
"$BIN" generate --model "$WORK/run-cuda" --prompt "First" --max-tokens 4 --temperature 0 >/dev/null
python3 - "$WORK" <<'EOF'
import json, sys
work = sys.argv[1]
def losses(device):
    rows = [json.loads(l) for l in open(f"{work}/run-{device}/metrics.jsonl")]
    return [r["train_loss"] for r in rows if "train_loss" in r], [r["val_loss"] for r in rows if "val_loss" in r]
(cpu_train, cpu_val), (gpu_train, gpu_val) = losses("cpu"), losses("cuda")
assert len(cpu_train) == len(gpu_train) == 16, (len(cpu_train), len(gpu_train))
worst = max(abs(a - b) / abs(a) for a, b in zip(cpu_train + cpu_val, gpu_train + gpu_val))
print(f"train/val losses, cpu vs cuda (emulated): worst relative difference {worst:.2e}")
assert worst < 1e-4, "the CUDA backend's losses differ from the CPU's"
cpu, gpu = (json.load(open(f"{work}/generate-{d}.json")) for d in ("cpu", "cuda"))
print("greedy ids cpu: ", cpu["ids"])
print("greedy ids cuda:", gpu["ids"])
assert cpu["ids"] == gpu["ids"], "greedy generation differs between cpu and cuda"
cpu, gpu = (json.load(open(f"{work}/sample-{d}.json")) for d in ("cpu", "cuda"))
print("sampled ids cpu: ", cpu["ids"])
print("sampled ids cuda:", gpu["ids"])
assert cpu["ids"] == gpu["ids"], "seeded sampling differs between cpu and cuda"
EOF
echo "cuda ci: passed"
