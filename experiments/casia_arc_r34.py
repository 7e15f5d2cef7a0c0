"""CASIA-WebFace, IResNet-34 + ArcFace (s=64, m=0.5): the margin head on icyface's data and recipe.

casia_softmax_r34's recipe with the ArcFace head. For scale: the ArcFace paper's loss comparison on
CASIA with a ResNet-50 puts softmax at about 99.1% on LFW and ArcFace at about 99.5%.

Data (as casia_softmax_r34; see the README, "Reproducing the reference experiments"):

    python tools/preprocess.py data/casia/raw data/casia/aligned --pick largest --workers 2 --resume
    python tools/make_tfrecord.py --source data/casia/aligned --out data/casia/tfrecord --shards 64 --verify
    python tools/run.py experiments/casia_arc_r34.py
    python tools/eval.py --model work_dirs/casia_arc_r34/embedder.keras --bin data/verification/lfw.bin \\
        --bin data/verification/cfp_fp.bin --bin data/verification/agedb_30.bin \\
        --out work_dirs/casia_arc_r34/eval/report.json
"""
from experiments.base import replace
from experiments.casia_softmax_r34 import experiment as softmax

experiment = replace(
    softmax,
    name="casia_arc_r34",
    model=replace(softmax.model, head={"type": "arcface", "s": 64.0, "m": 0.5}),
)
