"""MS1M-ArcFace, MobileFaceNet ("mbf") + ArcFace: insightface arcface_torch's configs/ms1mv2_mbf.py.

Its settings: MobileFaceNet at width 2 with a 512-d embedding (insightface's "mbf", about 0.45
GFLOPs); ArcFace (s=64, m=0.5); 128 images per GPU; SGD, momentum 0.9, weight decay 1e-4; LR 0.1
with polynomial decay (power 2), no warm-up; 40 epochs (r50: 20); fp16; flips only. The LR belongs
to a global batch of 1,024 (8 GPUs), scaled linearly with the replicas as in ms1m_arc_r50.
For scale: the MobileFaceNet paper reports 99.55% on LFW and 96.07% on AgeDB-30 (128-d, MS1M).

Data (as ms1m_arc_r50; see the README, "Reproducing the reference experiments"):

    python tools/make_tfrecord.py --rec data/faces_emore/train.rec --out data/ms1m --shards 256 --verify
    mkdir -p data/verification && cp data/faces_emore/{lfw,cfp_fp,agedb_30}.bin data/verification/
    python tools/run.py experiments/ms1m_arc_mfn.py
    python tools/eval.py --model work_dirs/ms1m_arc_mfn/embedder.keras --bin data/verification/lfw.bin \\
        --bin data/verification/cfp_fp.bin --bin data/verification/agedb_30.bin \\
        --out work_dirs/ms1m_arc_mfn/eval/report.json
"""
from experiments.base import replace
from experiments.ms1m_arc_r50 import experiment as r50

experiment = replace(
    r50,
    name="ms1m_arc_mfn",
    model=replace(r50.model, backbone={"type": "mobilefacenet", "width": 2.0}, embedding_size=512),
    train=replace(r50.train, epochs=40, weight_decay=1e-4),
)
