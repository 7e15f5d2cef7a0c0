"""Turn an experiment's data section into a TFRecord folder to train on and verification sets."""
import hashlib
import json
from pathlib import Path

from arcface_keras.config import FOLDS, SYNTHETIC_SET, ConfigError, check_label_space, synthetic_settings
from arcface_keras.data.tfrecord import MANIFEST


def cache_dir(data):
    return Path(data.cache_dir).expanduser()


def training_folder(data):
    """The TFRecord folder to train on: `data.train` as is, or converted once into cached shards.

    `data.train` may be a TFRecord folder (with manifest.json), an identity folder or an
    InsightFace .rec file; `data.synthetic` generates identities instead. The folder holds 2+
    classes and every label is below its num_classes (ConfigError naming the setting otherwise).
    """
    from arcface_keras.data import sources

    key = "data.synthetic" if data.synthetic else f"data.train={data.train!r}"
    try:
        if data.synthetic:
            folder = cached_conversion(synthetic_train_folder(data), sources.folder_source, cache_dir(data))
        else:
            train = Path(data.train).expanduser()
            make = sources.rec_source if train.suffix == ".rec" else sources.folder_source
            folder = train if (train / MANIFEST).is_file() else cached_conversion(train, make, cache_dir(data))
        check_labels(key, folder, cache_dir(data))
    except ConfigError:
        raise
    except ValueError as error:  # the converter's and the shard check's one-line errors
        raise ConfigError(f"{key}: {error}") from None
    return folder


def check_labels(key, folder, cache):
    """2+ classes, and labels below num_classes: compared with the manifest's max_label where the converter
    recorded it, else every shard's labels read once (tfrecord.verify) and remembered under `cache`."""
    from arcface_keras.data.tfrecord import verify

    if "max_label" in check_label_space(key, folder):
        return
    checked = cache / "verified" / fingerprint(Path(folder) / MANIFEST)
    if not checked.is_file():
        verify(folder)
        checked.parent.mkdir(parents=True, exist_ok=True)
        checked.touch()


def fingerprint(path):
    """A key of a file: its resolved path, size and modification time."""
    stat = Path(path).stat()
    return hashlib.sha1(json.dumps([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]).encode()).hexdigest()[:16]


def cached_conversion(path, make_source, cache, num_shards=8):
    """Convert `path` once into shards under `cache`, keyed by its resolved path, size and mtime."""
    from arcface_keras.data.sources import convert

    out = cached_folder(path, cache)
    if not (out / MANIFEST).is_file():
        convert([make_source(path)], out, num_shards=num_shards, workers=1, progress=False)
    return out


def cached_folder(path, cache):
    """Where `cached_conversion` puts (or has put) the shards of `path`."""
    return cache / "tfrecord" / fingerprint(path)


def known_num_classes(data):
    """The number of training classes when it is known without preparing anything: from the synthetic
    settings or a manifest (data.train's own, or that of its cached conversion); None otherwise."""
    if data.synthetic:
        return synthetic_settings(data).identities
    train = Path(data.train).expanduser()
    for folder in (train, cached_folder(train, cache_dir(data)) if train.exists() else None):
        if folder is not None and (folder / MANIFEST).is_file():
            return int(json.loads((folder / MANIFEST).read_text())["num_classes"])
    return None


# A spawned worker starts in ~0.3 s (NumPy, OpenCV and the renderer: the package imports no Keras) and renders
# ~1.5 ms an image: a second worker shortens the generation from ~500 images (the demo's 4,000: 6.9 s -> 3.2 s).
POOL_MIN_IMAGES = 1_000


def synthetic_train_folder(data):
    from arcface_keras.data.synthetic import ensure_synthetic

    s = synthetic_settings(data)
    workers = 2 if s.identities * s.images >= POOL_MIN_IMAGES else 1
    return ensure_synthetic(cache_dir(data) / "synthetic", s.identities, s.images, s.seed, workers=workers)


def check_val_bins(val):
    """Each .bin of data.val unpickled by the reader that runs none of its code, so that a hostile or
    damaged file is refused in one line before any work (tools/run.py, --check included, and engine.run)."""
    from arcface_keras.data.verification import read_bin

    for name, path in val.items():
        path = Path(path).expanduser()
        if path.suffix == ".bin" and path.is_file():
            try:
                read_bin(path)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"data.val.{name}={str(path)!r}: {str(exc).removeprefix(f'{path}: ')}") from None


def validation_sets(data):
    """{name: path} of every verification set: `data.val` plus held-out synthetic identities."""
    sets = {name: str(Path(path).expanduser()) for name, path in data.val.items()}
    if data.synthetic:
        sets[SYNTHETIC_SET] = str(synthetic_pairs(data))
    return sets


def synthetic_pairs(data):
    """Pairs.txt over synthetic identities never seen in training (indices after the training ones)."""
    from arcface_keras.data.synthetic import ensure_synthetic
    from arcface_keras.data.verification import make_pairs, write_pairs_txt

    s = synthetic_settings(data)
    folder = ensure_synthetic(cache_dir(data) / "synthetic", s.val_identities, s.val_images, s.seed,
                              first_identity=s.identities)
    pairs = Path(folder) / f"pairs_{s.val_pairs}.txt"
    if not pairs.is_file():
        write_pairs_txt(pairs, make_pairs(folder, num_pairs=s.val_pairs, folds=FOLDS, seed=s.seed))
    return pairs
