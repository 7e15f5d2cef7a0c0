"""CASIA-WebFace, IResNet-34 + softmax + center loss: icyface's first planned next step.

casia_softmax_r34's recipe with Wen et al.'s center loss added to the softmax classifier:
λ·½·mean‖x − c_y‖² with λ = center_weight 0.01, the centres moved at rate α = 0.5 (the head's defaults).

Data (as casia_softmax_r34; see the README, "Reproducing the reference experiments"):

    python tools/preprocess.py data/casia/raw data/casia/aligned --pick largest --workers 2 --resume
    python tools/make_tfrecord.py --source data/casia/aligned --out data/casia/tfrecord --shards 64 --verify
    python tools/run.py experiments/casia_center_r34.py
    python tools/eval.py --model work_dirs/casia_center_r34/embedder.keras --bin data/verification/lfw.bin \\
        --bin data/verification/cfp_fp.bin --bin data/verification/agedb_30.bin \\
        --out work_dirs/casia_center_r34/eval/report.json
"""
from experiments.base import replace
from experiments.casia_softmax_r34 import experiment as softmax

experiment = replace(
    softmax,
    name="casia_center_r34",
    model=replace(softmax.model,
                  head={"type": "center", "base": "softmax", "center_weight": 0.01, "center_alpha": 0.5}),
)
