#!/usr/bin/env bash
# One-command GPU benchmark: IResNet-50 and MobileFaceNet + ArcFace training on one NVIDIA GPU (batch 256)
# and one step of each head alone (a million classes), JAX backend with XLA, under float32, mixed_float16 and
# mixed_bfloat16; prints img/s, each row's speed against auto's choice and the seconds of its first step
# (compiling), the measured matmul peaks and each model's share of them; ends within ~7 minutes (--budget).
# Extra arguments go to bench/bench_gpu.py (see its --help). XLA off exists on TensorFlow only (JAX always
# compiles): on a machine with TensorFlow's GPU build, bench/gpu.sh --backend tensorflow adds the XLA off rows.
#
# Needs Python with keras and jax[cuda12]; no TensorFlow, no network, no install of this package
# (it runs from this source tree). On a machine without internet, bring the wheels along:
#   pip download "jax[cuda12]" keras -d wheels     # on a connected machine, same Python and platform
#   WHEELS=wheels bench/gpu.sh                      # installs them offline first
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${WHEELS:-}" ]]; then
    python -m pip install -q --no-index --find-links "$WHEELS" "jax[cuda12]" keras
fi
exec python bench/bench_gpu.py --device gpu --backend jax "$@"
