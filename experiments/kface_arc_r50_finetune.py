"""K-Face fine-tuning of a published IResNet-50 (arcface_torch, MS1MV3 + ArcFace) with a new ArcFace head.

Where kface_arc_r50.py trains IR-50 from scratch on MS1M + K-Face (5 epochs of 45,876 steps), this
starts from arcface_torch's released ms1mv3_arcface_r50_fp16 backbone and trains on the K-Face
persons alone, so a run takes minutes of GPU instead of days. The backbone uses PyTorch's padding
(`padding="symmetric"`), as the imported weights need, and no dropout (arcface_torch trains
without). The head's 400 class centres start from random, so the LR is a tenth of insightface's
0.1 with one epoch of warm-up, then cosine decay over 10 epochs; weight decay 5e-4 as in training.

    python tools/import_weights.py ms1mv3_arcface_r50_fp16/backbone.pth --out data/pretrained/ms1mv3_arcface_r50.keras --depth 50
    python tools/run.py experiments/kface_arc_r50_finetune.py
    python tools/eval.py --model work_dirs/kface_arc_r50_finetune/embedder.keras --bin data/verification/lfw.bin \\
        --pairs data/kface/aligned/test/pairs.txt --out work_dirs/kface_arc_r50_finetune/eval/report.json

Data: data/kface/aligned/train, the aligned K-Face training persons (see kface_arc_r50.py for the
selection and preprocessing commands); evaluated on the three insightface sets and the K-Face test pairs.
"""
from experiments.base import BASE, VERIFICATION, data_path, replace
from experiments.kface_arc_r50 import ARCFACE_TF2_AUGMENT

experiment = replace(
    BASE,
    name="kface_arc_r50_finetune",
    data=replace(
        BASE.data,
        train=data_path("kface", "aligned", "train"),
        val={**VERIFICATION, "kface": data_path("kface", "aligned", "test", "pairs.txt")},
        augment=[*ARCFACE_TF2_AUGMENT, "variety"],
    ),
    model=replace(BASE.model, backbone={"type": "resnet50", "padding": "symmetric"},
                  head={"type": "arcface", "s": 64.0, "m": 0.5},
                  pretrained=data_path("pretrained", "ms1mv3_arcface_r50.keras")),
    train=replace(BASE.train, epochs=10, batch_size=128, lr=0.01, lr_batch=128, lr_schedule="cosine",
                  warmup_epochs=1.0, weight_decay=5e-4, save_steps=500),
    eval=replace(BASE.eval, every_steps=500),
)
