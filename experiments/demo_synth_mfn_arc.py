"""The embedded default: MobileFaceNet + ArcFace on synthetic identities, verified on held-out ones.

No data to download: the synthetic identities are generated into data.cache_dir on first use.
    python tools/run.py experiments/demo_synth_mfn_arc.py
"""
from arcface_keras.config import Data, Eval, Experiment, Log, Model, Train

experiment = Experiment(
    name="demo_synth_mfn_arc",
    data=Data(
        synthetic=dict(identities=300, images=30, val_identities=60, val_images=10, val_pairs=1200, seed=0),
        image_size=64,
        augment=["flip"],
    ),
    model=Model(backbone=dict(type="mobilefacenet", width=0.5), head=dict(type="arcface", s=32.0, m=0.5),
                embedding_size=128),
    train=Train(epochs=6, batch_size=64, lr=0.1, lr_schedule="cosine", warmup_epochs=0.5, save_steps=200),
    eval=Eval(every_steps=0),
    log=Log(wandb="offline"),
)
