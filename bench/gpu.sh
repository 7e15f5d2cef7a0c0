#!/usr/bin/env bash
# One-command GPU benchmark: IResNet-50 and MobileFaceNet + ArcFace training on one NVIDIA GPU,
# JAX backend, mixed_bfloat16, XLA, batches 256 and 512; prints img/s, the measured bfloat16 matmul
# peak and each model's share of it. Extra arguments go to bench/bench_gpu.py (see its --help).
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
