#!/usr/bin/env bash
# The one prepared run for a lent GPU (issues 13 and 18): what the 2-core CPU cannot do.
#
#   1. the ResNet-50 fine-tuning step in bfloat16 and float32: throughput and MFU
#      (transfer_jax.bench.resnet_step, global batch 128 of 224x224 images);
#   2. T1 at TLlib's protocol at TLlib's own 50k iterations (experiments/t1_mnist_usps_tllib.py
#      with total_steps=50000), the rows of its figure first, their 3 seeds vectorized (vmap on
#      the GPU), until DEADLINE seconds have passed; after each group the report and the runs'
#      records (metrics, summaries, configs: no checkpoints) are packed into $OUT.
#
# Here, once per session (downloads ~11 MB of wheels for the GPU machine's Python 3.12, copies
# MNIST and USPS into .gpu_data; both folders are ignored through .git/info/exclude):
#   bash experiments/gpu_session.sh prepare
# Then one device call (the device tool's `run`):
#   command: bash experiments/gpu_session.sh run 480     carry: [".whl", ".gpu_data"]
#   timeout_s: 600
# It comes back with $OUT/resnet.jsonl, $OUT/t1_tllib_50k.md and $OUT/records.tgz; unpack the
# records into experiments/records/t1_mnist_usps_tllib_50k and remake the table anywhere with
#   python -m transfer_jax.report experiments/t1_mnist_usps_tllib.py \
#       --override total_steps=50000 --override eval_every_steps=2500 \
#       --workdir=experiments/records/t1_mnist_usps_tllib_50k
# On a CPU, `bash experiments/gpu_session.sh run 60 200` tries the whole path with 200-step
# runs (the third argument) and the local .venv.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-run}
DEADLINE=${2:-480}
STEPS=${3:-50000}
OUT=${OUT:-runs/gpu_session_out}
WORK=runs/t1_tllib_50k
# The figure's rows first (DANN, CDAN, MDD, MCC), then the rest of the table; MCD (7 passes an
# iteration) last. ADDA is left out: --override total_steps would stretch its source pretraining
# (10k iterations, its authors' recipe) too.
ROWS=(dann cdan mcc mdd source_only target_supervised dan jan afn bsp mcd)
SEEDED=(dann cdan mcc source_only)

if [[ $MODE == prepare ]]; then
  mkdir -p .git/info .whl .gpu_data/mnist .gpu_data/usps
  for p in /.whl/ /.gpu_data/; do
    grep -qx "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude
  done
  # What the GPU image lacks (its package list: /work/.library/device/KINDS.md), pinned as in
  # requirements.txt where it pins them.
  for p in tensorflow-datasets==4.9.10 importlib_resources==7.1.0 grain==0.2.18 \
           ml-collections==1.1.0 clu==0.0.12 submitit==1.5.4 array-record dm-tree \
           immutabledict simple-parsing tensorflow-metadata toml termcolor docstring-parser; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl "$p" || exit 1
  done
  python3 -m pip wheel -q --no-deps promise==2.3 -w .whl || exit 1   # An sdist only.
  cp ../shared/datasets/mnist/mnist.npz .gpu_data/mnist/
  cp ../shared/datasets/usps/usps.h5 .gpu_data/usps/
  du -sh .whl .gpu_data
  exit 0
fi

if [[ -d .whl && ! -x .venv/bin/python ]]; then   # The GPU machine: its own jax, flax, optax.
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  PY=python3
else
  PY=.venv/bin/python
fi
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
start=$(date +%s)
smoke='import transfer_jax.training.runtime, jax; print("devices:", jax.devices())'
if ! $PY -c "$smoke"; then   # A newer XLA that refuses our XLA:CPU flag: run without it.
  export TRANSFER_JAX_CPU_FLAGS=0
  $PY -c "$smoke" || exit 1
fi

# 1. The ResNet-50 step (float32 and bfloat16), JAX alone: one JSON line each.
if [[ $STEPS == 50000 ]]; then
  for dtype in bfloat16 float32; do
    timeout 150 $PY -m transfer_jax.bench.resnet_step --arch resnet50 --batch_size 128 \
      --dtype $dtype --no_torch --steps 10 --repeats 3 --rounds 1 | tee -a "$OUT/resnet.jsonl"
  done
fi

# 2. T1-TLlib at STEPS iterations, a row (both tasks, its seeds vectorized) at a time.
sweep=(experiments/t1_mnist_usps_tllib.py --workdir=$WORK --override total_steps=$STEPS
       --override eval_every_steps=$((STEPS / 20)) --override data.manual_dir=.gpu_data)
for row in "${ROWS[@]}"; do
  if (( $(date +%s) - start > DEADLINE )); then
    echo "deadline: $row and the rows after it are not run"; break
  fi
  seeds=(--only seed=0)
  [[ " ${SEEDED[*]} " == *" $row "* ]] && seeds=(--only seed=0 --only seed=1 --only seed=2)
  $PY -m transfer_jax.sweep "${sweep[@]}" --only method=$row "${seeds[@]}" --vectorize 3
  $PY -m transfer_jax.report "${sweep[@]}" --records=$WORK/records --output="$OUT/t1_tllib_50k"
  tar czf "$OUT/records.tgz" -C $WORK/records .
done
echo "elapsed $(( $(date +%s) - start )) s"
