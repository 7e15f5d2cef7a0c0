"""CASIA-WebFace, IResNet-34 + online triplet loss: icyface's other planned next step.

casia_softmax_r34's recipe with FaceNet's triplet loss instead of a classifier: margin 0.2 on
squared distances of L2-normalised embeddings, batch-hard mining. Batches are P×K: 32 identities ×
4 images (data.sampler="pk"), so every anchor has positives in its batch.

Data (as casia_softmax_r34; see the README, "Reproducing the reference experiments"):

    python tools/preprocess.py data/casia/raw data/casia/aligned --pick largest --workers 2 --resume
    python tools/make_tfrecord.py --source data/casia/aligned --out data/casia/tfrecord --shards 64 --verify
    python tools/run.py experiments/casia_triplet_r34.py
    python tools/eval.py --model work_dirs/casia_triplet_r34/embedder.keras --bin data/verification/lfw.bin \\
        --bin data/verification/cfp_fp.bin --bin data/verification/agedb_30.bin \\
        --out work_dirs/casia_triplet_r34/eval/report.json
"""
from experiments.base import replace
from experiments.casia_softmax_r34 import experiment as softmax

experiment = replace(
    softmax,
    name="casia_triplet_r34",
    data=replace(softmax.data, sampler="pk", images_per_identity=4),
    model=replace(softmax.model, head={"type": "triplet", "margin": 0.2, "mining": "batch_hard"}),
)
