"""MS1M-ArcFace, IResNet-50 + CosFace (s=64, m=0.4): ms1m_arc_r50 with the additive cosine margin.

Everything but the head is ms1m_arc_r50's (arcface_torch's configs/ms1mv2_r50.py recipe), so the
two runs compare the margins. m=0.4 is arcface_torch's CosFace margin (its combined margin
(1, 0, 0.4)); the CosFace paper used 0.35 (`--set model.head.m=0.35`).

Data (as ms1m_arc_r50; see the README, "Reproducing the reference experiments"):

    python tools/make_tfrecord.py --rec data/faces_emore/train.rec --out data/ms1m --shards 256 --verify
    mkdir -p data/verification && cp data/faces_emore/{lfw,cfp_fp,agedb_30}.bin data/verification/
    python tools/run.py experiments/ms1m_cos_r50.py
    python tools/eval.py --model work_dirs/ms1m_cos_r50/embedder.keras --bin data/verification/lfw.bin \\
        --bin data/verification/cfp_fp.bin --bin data/verification/agedb_30.bin \\
        --out work_dirs/ms1m_cos_r50/eval/report.json
"""
from experiments.base import replace
from experiments.ms1m_arc_r50 import experiment as arcface

experiment = replace(
    arcface,
    name="ms1m_cos_r50",
    model=replace(arcface.model, head={"type": "cosface", "s": 64.0, "m": 0.4}),
)
