"""Turn an experiment's data section into a TFRecord folder to train on and verification sets."""
import hashlib
import json
from pathlib import Path

from arcface_keras.data.folders import list_identity_folder
from arcface_keras.data.tfrecord import MANIFEST, write_shards

SYNTHETIC_KEYS = {"identities", "images", "val_identities", "val_images", "val_pairs", "seed"}


def cache_dir(data):
    return Path(data.cache_dir).expanduser()


def training_folder(data):
    """The TFRecord folder for `data.train` (or the synthetic identities), converting on first use."""
    if data.synthetic:
        return folder_to_tfrecord(synthetic_train_folder(data), cache_dir(data))
    if not data.train:
        raise ValueError("data.train is empty: give a TFRecord folder, an identity folder, or data.synthetic")
    train = Path(data.train).expanduser()
    if (train / MANIFEST).is_file():
        return train
    if train.suffix == ".rec":
        raise ValueError(f"data.train={train}: convert it first with tools/make_tfrecord.py --rec {train} --out DIR")
    return folder_to_tfrecord(train, cache_dir(data))


def folder_to_tfrecord(folder, cache, num_shards=8):
    """Convert an identity folder once into cached shards (keyed by its path and file list)."""
    paths, labels, class_names = list_identity_folder(folder)
    key = hashlib.sha1(json.dumps([str(Path(folder).resolve()), paths]).encode()).hexdigest()[:16]
    out = cache / "tfrecord" / key
    if not (out / MANIFEST).is_file():
        examples = ((Path(p).read_bytes(), label) for p, label in zip(paths, labels))
        manifest = {
            "num_classes": len(class_names),
            "class_names": class_names,
            "sources": [{"path": str(folder), "kind": "folder", "label_offset": 0,
                         "num_classes": len(class_names), "num_images": len(paths)}],
        }
        write_shards(examples, out, min(num_shards, len(paths)), manifest)
    return out


def synthetic_settings(data):
    unknown = sorted(set(data.synthetic) - SYNTHETIC_KEYS)
    if unknown:
        raise ValueError(f"data.synthetic: unknown key {unknown[0]!r}; valid: {', '.join(sorted(SYNTHETIC_KEYS))}")
    return {"identities": 200, "images": 20, "val_identities": 40, "val_images": 10, "val_pairs": 1000,
            "seed": 0, **data.synthetic}


def synthetic_train_folder(data):
    from arcface_keras.data.synthetic import ensure_synthetic

    s = synthetic_settings(data)
    return ensure_synthetic(cache_dir(data) / "synthetic", s["identities"], s["images"], s["seed"])


def validation_sets(data):
    """{name: path} of every verification set: `data.val` plus held-out synthetic identities."""
    sets = {name: str(Path(path).expanduser()) for name, path in data.val.items()}
    if data.synthetic:
        sets["synthetic"] = str(synthetic_pairs(data))
    return sets


def synthetic_pairs(data):
    """Pairs.txt over synthetic identities never seen in training (indices after the training ones)."""
    from arcface_keras.data.synthetic import ensure_synthetic
    from arcface_keras.data.verification import make_pairs, write_pairs_txt

    s = synthetic_settings(data)
    folder = ensure_synthetic(cache_dir(data) / "synthetic", s["val_identities"], s["val_images"], s["seed"],
                              first_identity=s["identities"])
    pairs = Path(folder) / f"pairs_{s['val_pairs']}.txt"
    if not pairs.is_file():
        write_pairs_txt(pairs, make_pairs(folder, num_pairs=s["val_pairs"], folds=10, seed=s["seed"]))
    return pairs
