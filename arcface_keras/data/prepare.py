"""Turn an experiment's data section into a TFRecord folder to train on and verification sets."""
import hashlib
import json
from pathlib import Path

from arcface_keras.config import ConfigError
from arcface_keras.data.tfrecord import MANIFEST

SYNTHETIC_KEYS = {"identities", "images", "val_identities", "val_images", "val_pairs", "seed"}


def cache_dir(data):
    return Path(data.cache_dir).expanduser()


def training_folder(data):
    """The TFRecord folder to train on: `data.train` as is, or converted once into cached shards.

    `data.train` may be a TFRecord folder (with manifest.json), an identity folder or an
    InsightFace .rec file; `data.synthetic` generates identities instead.
    """
    from arcface_keras.data import sources

    if data.synthetic:
        return cached_conversion(synthetic_train_folder(data), sources.folder_source, cache_dir(data))
    train = Path(data.train).expanduser()
    if (train / MANIFEST).is_file():
        return train
    make = sources.rec_source if train.suffix == ".rec" else sources.folder_source
    return cached_conversion(train, make, cache_dir(data))


def cached_conversion(path, make_source, cache, num_shards=8):
    """Convert `path` once into shards under `cache`, keyed by its resolved path, size and mtime."""
    from arcface_keras.data.sources import convert

    out = cached_folder(path, cache)
    if not (out / MANIFEST).is_file():
        convert([make_source(path)], out, num_shards=num_shards, workers=1, progress=False)
    return out


def cached_folder(path, cache):
    """Where `cached_conversion` puts (or has put) the shards of `path`."""
    path = Path(path)
    stat = path.stat()
    key = hashlib.sha1(json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns]).encode()).hexdigest()[:16]
    return cache / "tfrecord" / key


def known_num_classes(data):
    """The number of training classes when it is known without preparing anything: from the synthetic
    settings or a manifest (data.train's own, or that of its cached conversion); None otherwise."""
    if data.synthetic:
        return synthetic_settings(data)["identities"]
    train = Path(data.train).expanduser()
    for folder in (train, cached_folder(train, cache_dir(data)) if train.exists() else None):
        if folder is not None and (folder / MANIFEST).is_file():
            return int(json.loads((folder / MANIFEST).read_text())["num_classes"])
    return None


def synthetic_settings(data):
    unknown = sorted(set(data.synthetic) - SYNTHETIC_KEYS)
    if unknown:
        raise ConfigError(f"data.synthetic: unknown key {unknown[0]!r}; valid: {', '.join(sorted(SYNTHETIC_KEYS))}")
    return {"identities": 200, "images": 20, "val_identities": 40, "val_images": 10, "val_pairs": 1000,
            "seed": 0, **data.synthetic}


def synthetic_train_folder(data):
    from arcface_keras.data.synthetic import ensure_synthetic

    s = synthetic_settings(data)
    return ensure_synthetic(cache_dir(data) / "synthetic", s["identities"], s["images"], s["seed"], workers=2)


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
