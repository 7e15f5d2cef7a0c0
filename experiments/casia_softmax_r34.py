"""CASIA-WebFace, IResNet-34 + softmax: the icyface baseline, and the recipe of the casia_* series.

icyface trained a ResNet-34 with a plain softmax classifier on the largest MTCNN face of every
CASIA-WebFace image (10,575 identities, 494,414 images) for about 20 epochs (half a day on a
GTX 1080 Ti) and reported about 95% on LFW's 6,000 pairs. Here: IResNet-34 with a 512-d embedding,
batch 128, SGD (momentum 0.9, weight decay 5e-4) at LR 0.1 per 512 images of global batch (the ArcFace
paper's CASIA setting; 0.025 at batch 128), divided by 10 at epochs 12.5 and 17.5 of 20 (the paper's
steps at 20K and 28K of 32K iterations, shortened to 20 epochs), horizontal flips only. Scored on
LFW (the same 6,000 pairs), CFP-FP and AgeDB-30. casia_center_r34, casia_triplet_r34 and
casia_arc_r34 change only the head (and the sampler for triplets), so the four compare losses.

Data (3,862 steps per epoch at batch 128; see the README, "Reproducing the reference experiments"):

    python tools/preprocess.py data/casia/raw data/casia/aligned --pick largest --workers 2 --resume
    python tools/make_tfrecord.py --source data/casia/aligned --out data/casia/tfrecord --shards 64 --verify
    python tools/run.py experiments/casia_softmax_r34.py
    python tools/eval.py --model work_dirs/casia_softmax_r34/embedder.keras --bin data/verification/lfw.bin \\
        --bin data/verification/cfp_fp.bin --bin data/verification/agedb_30.bin \\
        --out work_dirs/casia_softmax_r34/eval/report.json
"""
from experiments.base import BASE, data_path, replace

experiment = replace(
    BASE,
    name="casia_softmax_r34",
    data=replace(BASE.data, train=data_path("casia", "tfrecord"), augment=["flip"]),
    model=replace(BASE.model, backbone="resnet34", head="softmax", embedding_size=512),
    train=replace(BASE.train, epochs=20, batch_size=128, lr=0.1, lr_batch=512, lr_scaling="linear",
                  lr_schedule="step", lr_steps=[12.5, 17.5], warmup_epochs=0.0, weight_decay=5e-4),
)
