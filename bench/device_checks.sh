#!/usr/bin/env bash
# The GPU checks of docs/benchmarks.md, prepared to run unattended on a lent GPU machine.
#
#   DNET_DATA_DIR=/path/with/cifar-10-batches-py[,cifar-100-python] OUT=results/ \
#       bash bench/device_checks.sh STEP [STEP ...]
#
# Steps (each bounded by `timeout`, each writing JSON under $OUT):
#   env      nvidia-smi, torch and Python versions, cores, memory
#   bench    bench/meta_step.py and bench/loader.py on cuda
#   pack     1, 2, 4, 8 Difficulty-Net trials as processes on one GPU, plainly, then under MPS
#   run200   starts the 200-epoch CIFAR-10-LT Difficulty-Net trial in the background (setsid);
#            `bash bench/device_checks.sh poll` shows its progress, rerunning run200 resumes it
#   paper    starts the CIFAR-100-LT paper recipe (stage 1 + stage 2) in the background
#   poll     the last lines of the background runs' logs, and their JSON copied to $OUT
# A background run keeps a checkpoint in /tmp/dnet-device; copy it to $OUT before the machine
# goes back, carry it to the next lent machine and rerun the step there to continue.
#
# Only the core is needed (torch, torchvision, numpy, pyyaml): the repo root goes on PYTHONPATH,
# so a device image without Ray, Optuna or pyarrow runs it. Background runs live in
# /tmp/dnet-device and keep going between calls while the machine stays lent.
set -u
OUT=${OUT:-bench/results/device}
DATA=${DNET_DATA_DIR:-}
WORK=/tmp/dnet-device
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
PY=${PYTHON:-python3}

step_env() {
    { nvidia-smi; $PY -c "import torch, sys; print(torch.__version__, sys.version)"; nproc; free -g; } \
        > "$OUT/env.txt" 2>&1
    cat "$OUT/env.txt"
}

step_bench() {
    timeout 240 $PY bench/meta_step.py --device cuda --data-dir "$DATA" \
        --out "$OUT/meta_step_cuda.json" 2>&1 | tail -12
    timeout 180 $PY bench/loader.py --device cuda --rounds 1 --data-dir "$DATA" \
        --out "$OUT/loader_cuda.json" 2>&1 | tail -8
}

step_pack() {
    timeout 200 $PY bench/gpu_throughput.py --mode pack --trials 1 2 4 8 --epochs 1 \
        --limit-s 150 --data-dir "$DATA" --out "$OUT/pack_plain.json" 2>&1 | tail -6
    export CUDA_MPS_PIPE_DIRECTORY=$WORK/mps CUDA_MPS_LOG_DIRECTORY=$WORK/mpslog
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if nvidia-cuda-mps-control -d; then
        timeout 200 $PY bench/gpu_throughput.py --mode pack --mps --trials 1 2 4 8 --epochs 1 \
            --limit-s 150 --data-dir "$DATA" --out "$OUT/pack_mps.json" 2>&1 | tail -6
        echo quit | nvidia-cuda-mps-control
    else
        echo "MPS daemon did not start: no MPS numbers" | tee "$OUT/pack_mps.txt"
    fi
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
}

step_run200() {
    setsid nohup $PY bench/gpu_throughput.py --mode run --epochs 200 --data-dir "$DATA" \
        --out "$WORK/run200.json" --ckpt "$WORK/run200.pt" --resume \
        >> "$WORK/run200.log" 2>&1 < /dev/null &
    sleep 30
    tail -3 "$WORK/run200.log"
}

step_paper() {
    # the Trainer itself (no Parquet, so no pyarrow needed): one JSON line per epoch, resumable
    setsid nohup $PY bench/gpu_throughput.py --mode run --dataset cifar100_lt --recipe paper \
        --data-dir "$DATA" --out "$WORK/paper100.json" --ckpt "$WORK/paper100.pt" --resume \
        >> "$WORK/paper100.log" 2>&1 < /dev/null &
    sleep 60
    tail -3 "$WORK/paper100.log"
}

step_poll() {
    for log in "$WORK"/*.log; do
        [ -f "$log" ] && { echo "== $log"; tail -4 "$log"; }
    done
    cp "$WORK"/*.json "$WORK"/*.pt "$OUT"/ 2>/dev/null  # the checkpoints: to continue elsewhere
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
}

[ $# -gt 0 ] || { sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 2; }
[ -n "$DATA" ] || { echo "set DNET_DATA_DIR to a folder with cifar-10-batches-py" >&2; exit 2; }
for s in "$@"; do
    case $s in
        env|bench|pack|run200|paper|poll) echo "### $s"; "step_$s" ;;
        *) echo "unknown step '$s': env, bench, pack, run200, paper or poll" >&2; exit 2 ;;
    esac
done
