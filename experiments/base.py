"""Shared settings of the reference experiments, and where their data lives.

Not an experiment itself (it defines no `experiment`): the files next to it start from `BASE` and
replace what they change, one section at a time:

    from experiments.base import BASE, data_path, replace
    experiment = replace(BASE, name="x", train=replace(BASE.train, epochs=5))

Every path is under the data root: $ARCFACE_DATA when set, else data/ at the repository root.
The README (Reproducing the reference experiments) builds this layout from the downloaded archives:

    data/verification/{lfw,cfp_fp,agedb_30}.bin   insightface verification sets
    data/ms1m/                                    MS1M-ArcFace TFRecords (from faces_emore/train.rec)
    data/ms1m_kface/                              MS1M-ArcFace + K-Face TFRecords
    data/kface/aligned/test/pairs.txt             K-Face test pairs
    data/casia/tfrecord/                          CASIA-WebFace TFRecords
"""
import os
from dataclasses import replace
from pathlib import Path

from arcface_keras.config import Data, Eval, Experiment, Log, Model, Train

__all__ = ["BASE", "DATA_ROOT", "VERIFICATION", "data_path", "replace"]

DATA_ROOT = Path(os.environ.get("ARCFACE_DATA") or Path(__file__).resolve().parent.parent / "data").expanduser()


def data_path(*parts):
    """A path under the data root, as a string (how experiments store paths)."""
    return str(DATA_ROOT.joinpath(*parts))


VERIFICATION = {name: data_path("verification", f"{name}.bin") for name in ("lfw", "cfp_fp", "agedb_30")}

# insightface's defaults (arcface_torch configs/base.py): 112x112 aligned faces, 512-d embeddings,
# 128 images per GPU, SGD with momentum 0.9 and weight decay 5e-4, horizontal flips only; the three
# verification sets scored every 2,000 steps.
BASE = Experiment(
    name="base",
    data=Data(image_size=112, augment=["flip"], val=VERIFICATION),
    model=Model(backbone="resnet50", head="arcface", embedding_size=512),
    train=Train(batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, save_steps=2000),
    eval=Eval(every_steps=2000),
    log=Log(wandb="offline"),
)
