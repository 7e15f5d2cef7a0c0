"""The embedded default: MobileFaceNet + ArcFace on synthetic identities, verified on held-out ones.

No data to download: 200 synthetic identities × 20 images are generated into data.cache_dir on
first use (and 40 more identities, never trained on, for 1,000 verification pairs). Images are
downscaled to 56×56 and the network is half width so that it trains in minutes on a 2-core CPU.
    python tools/run.py experiments/demo_synth_mfn_arc.py
"""
from arcface_keras.config import Data, Eval, Experiment, Log, Model, Train

experiment = Experiment(
    name="demo_synth_mfn_arc",
    data=Data(
        synthetic=dict(identities=200, images=20, val_identities=40, val_images=10, val_pairs=1000, seed=0),
        image_size=56,
        augment=["flip"],
    ),
    model=Model(backbone=dict(type="mobilefacenet", width=0.5), head=dict(type="arcface", s=32.0, m=0.3),
                embedding_size=128),
    train=Train(epochs=8, batch_size=64, lr=0.1, lr_schedule="cosine", warmup_epochs=0.5, save_steps=100),
    eval=Eval(every_steps=0),
    log=Log(wandb="offline"),
)
