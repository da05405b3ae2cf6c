#!/usr/bin/env bash
# The GPU checks of issue 19 (docs/benchmarks.md), in its order, for a lent GPU machine:
#
#   OUT=... bash bench/device_checks.sh STEP [STEP ...]
#   bash bench/device_checks.sh --device cpu env bench trial200 pack paper   # checked here
#
# Steps (each under `timeout`, each capped by what is left of BUDGET_S, default 540 s: one
# device command may run 600 s, so run `env bench trial200` in one call (carry
# .devdata/cifar10.tar.xz), `env pack paper` in the next (carry .devdata/cifar100.tar.xz: both
# archives together exceed the 64 MiB a call carries); 15 minutes of device time cover both):
#   env       nvidia-smi, torch/Python versions, cores; unpacks every carried .devdata/*.tar.xz
#             (CIFAR, compressed by `bash bench/device_checks.sh prepare`) to /tmp/dnet-data
#   bench     graphed == eager (tests/core/test_graph_cuda.py), then bench/meta_step.py eager and
#             graphed (--graph)
#   trial200  the 200-epoch CIFAR-10-LT Difficulty-Net trial (train.cuda_graph: true), s/epoch
#             and GPU utilisation (nvidia-smi every second); cut at its timeout, it reports the
#             epochs it finished and the projected 200-epoch time
#   pack      bench/packing.py: 1, 2, 4, 8 trials on the GPU, plainly and under MPS, on
#             PACK_DATASET (default cifar100_lt: the data the second call carries)
#   paper     only if trial200's s/epoch projects 250 epochs into the time left: the CIFAR-100-LT
#             paper recipe (stage 1 + 2, one seed, graphed), final test acc beside 52.96
#   prepare   (here, not on the device) .devdata/cifar10.tar.xz and cifar100.tar.xz from
#             DNET_DATA_DIR, else ../shared/data
# `--device cpu`: tiny sizes on digits_lt (no data needed, no GPU): the script's paths checked;
# its numbers say nothing about a GPU. Output: JSON and logs under $OUT, a summary on stdout.
# Only the core's dependencies (torch, numpy, pyyaml, pyarrow; pytest for the test): no Ray.
set -u
DEVICE=cuda
if [ "${1:-}" = "--device" ]; then DEVICE=$2; shift 2; fi
OUT=${OUT:-bench/results/device}
BUDGET_S=${BUDGET_S:-540}
START=$(date +%s)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DATA=${DNET_DATA_DIR:-/tmp/dnet-data}
mkdir -p "$OUT"

left() { echo $((BUDGET_S - ($(date +%s) - START))); }
cap() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo "$((l > 5 ? l : 5))"; }
cpu() { [ "$DEVICE" = cpu ]; }

step_prepare() {
    local src=${DNET_DATA_DIR:-../shared/data}
    mkdir -p .devdata && grep -qx '/.devdata/' .git/info/exclude 2>/dev/null \
        || echo '/.devdata/' >> .git/info/exclude
    tar -C "$src" -cJf .devdata/cifar10.tar.xz cifar-10-batches-py
    tar -C "$src" -cJf .devdata/cifar100.tar.xz cifar-100-python
    du -m .devdata/*.tar.xz | awk '{print $2 ": " $1 " MiB (a device call carries 64 MiB)"}'
}

step_env() {
    { cpu || nvidia-smi; $PY -c "import torch, sys; print(torch.__version__, sys.version)"
      nproc; free -g; } > "$OUT/env.txt" 2>&1
    cat "$OUT/env.txt"
    for a in .devdata/*.tar.xz; do
        [ -f "$a" ] || continue
        mkdir -p "$DATA" && timeout "$(cap 60)" tar -C "$DATA" -xJf "$a" \
            && echo "$a unpacked to $DATA"
    done
}

step_bench() {
    timeout "$(cap 150)" $PY -m pytest -q --noconftest tests/core/test_graph_cuda.py 2>&1 \
        | tee "$OUT/graph_cuda_test.txt" | tail -4
    if cpu; then
        timeout "$(cap 300)" $PY bench/meta_step.py --quick --repeats 1 --warmup 1 \
            --out "$OUT/meta_step_cpu.json" 2>&1 | tail -8
        echo "meta_step --graph: skipped (CUDA graphs need a GPU)"
        return
    fi
    timeout "$(cap 120)" $PY bench/meta_step.py --device cuda --repeats 10 --data-dir "$DATA" \
        --out "$OUT/meta_step_cuda.json" 2>&1 | tail -8
    timeout "$(cap 120)" $PY bench/meta_step.py --device cuda --graph --repeats 10 \
        --data-dir "$DATA" --out "$OUT/meta_step_cuda_graph.json" 2>&1 | tail -8
}

# A run of gpu_throughput.py under a timeout, with the GPU's utilisation sampled alongside.
timed_run() {  # NAME SECONDS ARGS...
    local name=$1 secs=$2 util=""
    shift 2
    if ! cpu; then
        nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits \
            -lms 1000 > "$OUT/$name.util.csv" 2>/dev/null &
        util=$!
    fi
    timeout "$secs" $PY bench/gpu_throughput.py --mode run --device "$DEVICE" \
        --out "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1
    echo "$name: exit $? after $secs s at most; last epochs:"; tail -3 "$OUT/$name.log"
    [ -n "$util" ] && kill "$util"
    $PY - "$OUT/$name.json" "$OUT/$name.util.csv" "$name" <<'EOF'
import json, statistics, sys
from pathlib import Path
log = json.loads(Path(sys.argv[1]).read_text()) if Path(sys.argv[1]).is_file() else {"epochs": []}
ep = log["epochs"]
secs = [e["epoch_time_s"] for e in ep[1:]] or [e["epoch_time_s"] for e in ep]
util = Path(sys.argv[2])
u = [float(r.split(",")[0]) for r in util.read_text().split("\n") if r.strip()] if util.is_file() else []
s = {"epochs_done": len(ep), "median_s_per_epoch": statistics.median(secs) if secs else None,
     "mean_gpu_util_pct": statistics.mean(u) if u else None, "util_samples": len(u),
     "last": ep[-1] if ep else None}
Path(sys.argv[1]).with_suffix(".summary.json").write_text(json.dumps(s, indent=1))
print(f"{sys.argv[3]}: {s['epochs_done']} epochs, median {s['median_s_per_epoch']} s/epoch "
      f"(after the first), mean GPU utilisation {s['mean_gpu_util_pct']} % ({len(u)} samples)")
EOF
}

step_trial200() {
    if cpu; then
        timed_run trial200 "$(cap 200)" --dataset digits_lt --epochs 2
    else
        timed_run trial200 "$(cap 330)" --dataset cifar10_lt --epochs 200 --data-dir "$DATA" \
            --set train.cuda_graph=true
    fi
}

step_pack() {
    if cpu; then
        timeout "$(cap 300)" $PY bench/packing.py --device cpu --smoke \
            --out "$OUT/packing_cpu_smoke.json" 2>&1 | tail -5
    else
        timeout "$(cap 300)" $PY bench/packing.py --data-dir "$DATA" --limit-s 120 \
            --dataset "${PACK_DATASET:-cifar100_lt}" --set train.cuda_graph=true --out "$OUT/packing.json" 2>&1 | tail -10
    fi
}

step_paper() {
    local per need have
    per=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['median_s_per_epoch'] or 0)" \
        "$OUT/trial200.summary.json" 2>/dev/null || echo 0)
    have=$(left)
    need=$($PY -c "print(int(250 * $per * 1.2 + 60))")
    if ! cpu && { [ "$per" = 0 ] || [ "$need" -gt "$have" ]; }; then
        echo "paper: skipped: 250 epochs at ${per} s/epoch (trial200) need ~${need} s, ${have} s left"
        return
    fi
    if cpu; then  # stage 1 + stage 2 on digits_lt: the path, not the recipe's numbers
        timed_run paper "$(cap 200)" --dataset digits_lt --epochs 1 \
            --set stage2.enabled=true --set stage2.epochs=1
    else
        timed_run paper "$(cap "$have")" --dataset cifar100_lt --recipe paper --data-dir "$DATA" \
            --set train.cuda_graph=true
    fi
    $PY -c "import json,sys; e=json.load(open(sys.argv[1]))['epochs']; l=e[-1] if e else {}; \
print(f\"paper: {len(e)} epochs done; test acc {100*l.get('test_acc', float('nan')):.2f} \
(published Difficulty-Net CIFAR-100-LT IF 100: 52.96)\")" "$OUT/paper.json"
}

[ $# -gt 0 ] || { sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 2; }
for s in "$@"; do
    case $s in
        env|bench|trial200|pack|paper|prepare)
            echo "### $s ($(left) s of $BUDGET_S left)"; "step_$s" ;;
        *) echo "unknown step '$s': env, bench, trial200, pack, paper or prepare" >&2; exit 2 ;;
    esac
done
