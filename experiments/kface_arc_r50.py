"""MS1M-ArcFace + K-Face, IResNet-50 + ArcFace: the kface project's first training, on arcface-tf2's settings.

arcface-tf2's configs/arc_res50.yaml and train.py: batch 128, input 112, 512-d embedding, ResNet-50
with the "E" output (BN, dropout 0.5, flatten, dense, BN), ArcFace head (s=64, m=0.5), 5 epochs of
`model.fit`, SGD with momentum 0.9 at a constant LR of 0.01 (its train.py passes
`tf.constant(base_lr)`: no warm-up, no decay; on one GPU, so here 0.01 per 128 images of global
batch, scaled linearly with more replicas), weight decay 5e-4, a checkpoint every 1,000 steps,
no centre crop (is_ccrop False), images stored as encoded bytes in the TFRecords. Its augmentation:
resize to 128 and crop 112 at random, flip, saturation x [0.6, 1.4]; then the kface project's
"variety" images (random gamma curve, hue and saturation shifts), here drawn on the fly (p=0.5).
Scored on LFW, CFP-FP, AgeDB-30 and the K-Face test pairs.

Where it differs from arcface-tf2: the backbone is IResNet-50 trained from scratch (arcface-tf2's
"ResNet50" is keras.applications' ResNet-50 with ImageNet weights); the optimizer is plain momentum
SGD with decoupled weight decay on every weight (arcface-tf2: Nesterov momentum, L2 penalty on the
dense layers); arcface-tf2's `random_brightness(0.4)` acted on 0-255 pixels, a shift of at most 0.4
grey levels, so it is left out.

Data: 85,742 MS1M identities then 400 K-Face persons = 86,142 classes, 5,872,144 images
(45,876 steps per epoch at batch 128). From the archives (see the README, "Reproducing the reference experiments"):

    python tools/select_kface.py data/kface/raw --out data/kface/selected --lighting L1-L3 \\
        --accessory S001,S002,S005 --expression E01-E03 --camera C5-C10 --train 132 --test 30 --copy
    python tools/preprocess.py data/kface/selected/train data/kface/aligned/train --workers 2 --resume
    python tools/preprocess.py data/kface/selected/test data/kface/aligned/test --workers 2 --resume
    python tools/make_pairs.py data/kface/aligned/test
    python tools/make_tfrecord.py --rec data/faces_emore/train.rec --source data/kface/aligned/train \\
        --out data/ms1m_kface --shards 256 --verify
    python tools/run.py experiments/kface_arc_r50.py
    python tools/eval.py --model work_dirs/kface_arc_r50/embedder.keras --bin data/verification/lfw.bin \\
        --bin data/verification/cfp_fp.bin --bin data/verification/agedb_30.bin \\
        --pairs data/kface/aligned/test/pairs.txt --out work_dirs/kface_arc_r50/eval/report.json
"""
from experiments.base import BASE, VERIFICATION, data_path, replace

ARCFACE_TF2_AUGMENT = [
    "random_crop",  # resize 112 -> 128, crop 112 at random
    "flip",
    {"type": "color_jitter", "p": 1.0, "brightness": 0.0, "contrast": 0.0, "saturation": [0.6, 1.4], "hue": 0.0},
]

experiment = replace(
    BASE,
    name="kface_arc_r50",
    data=replace(
        BASE.data,
        train=data_path("ms1m_kface"),
        val={**VERIFICATION, "kface": data_path("kface", "aligned", "test", "pairs.txt")},
        augment=[*ARCFACE_TF2_AUGMENT, "variety"],
    ),
    model=replace(BASE.model, backbone={"type": "resnet50", "dropout": 0.5},
                  head={"type": "arcface", "s": 64.0, "m": 0.5}),
    train=replace(BASE.train, epochs=5, batch_size=128, lr=0.01, lr_batch=128, lr_schedule="constant",
                  warmup_epochs=0.0, weight_decay=5e-4, save_steps=1000),
)
