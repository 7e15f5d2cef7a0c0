"""Training images from identity folders, list files and InsightFace .rec files, merged into one label space."""
import csv
import threading
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from arcface_keras.config import MIN_CLASSES
from arcface_keras.data import recordio
from arcface_keras.data.folders import list_identity_folder
from arcface_keras.data.integrity import JPEG_START, PNG_START, UnreadableImage, read_bgr
from arcface_keras.data.tfrecord import MANIFEST, relabel_shards, write_records
from arcface_keras.io import atomic_path, write_json

DEFAULT_JPEG_QUALITY = 95


class Source:
    """A named, indexable set of labelled images: `len(source)`, `read(i) -> (encoded bytes, label)`.

    `read` may be called from several threads at once; labels are 0 .. num_classes − 1 of this source.
    """

    kind = ""

    def __init__(self, path, class_names, name=None, empty_classes=()):
        self.path = str(path)
        self.class_names = list(class_names)
        self.name = name or default_name(path)
        self.empty_classes = list(empty_classes)  # identities found with no image at all: no label

    @property
    def num_classes(self):
        return len(self.class_names)

    def describe(self, index):
        """Where item `index` comes from, for reports."""
        raise NotImplementedError

    def entry(self, label_offset, num_images):
        return {"path": self.path, "kind": self.kind, "label_offset": label_offset,
                "num_classes": self.num_classes, "num_images": num_images}


class FileSource(Source):
    """Image files with known labels: an identity folder or a list file."""

    def __init__(self, path, kind, paths, labels, class_names, name=None, empty_classes=()):
        super().__init__(path, class_names, name, empty_classes)
        self.kind = kind
        self.paths, self.labels = list(paths), list(labels)

    def __len__(self):
        return len(self.paths)

    def read(self, index):
        return Path(self.paths[index]).read_bytes(), self.labels[index]

    def describe(self, index):
        return self.paths[index]


class RecSource(Source):
    """The image records of an InsightFace .rec file (keys from its .idx, or a scan without one)."""

    kind = "rec"

    def __init__(self, rec_path, idx_path=None, name=None):
        self.records = recordio.RecordFile(rec_path, idx_path)
        self.keys = self.records.image_keys()
        num_classes = self.records.num_identities()
        if num_classes is None:  # no header record: one pass over the labels
            num_classes = max((self.records.image(key)[1] for key in self.keys), default=-1) + 1
        super().__init__(rec_path, [str(label) for label in range(num_classes)], name)

    def __len__(self):
        return len(self.keys)

    def read(self, index):
        return self.records.image(self.keys[index])

    def describe(self, index):
        return f"{self.path} key {self.keys[index]}"


def default_name(path):
    """A folder is named after itself, a file (train.rec, train.txt) after its folder."""
    path = Path(path).expanduser().resolve()
    return path.name if path.is_dir() else path.parent.name


def folder_source(root, name=None):
    """`root/<identity>/<image>`: labels by sorted identity name; folders without images get none."""
    paths, labels, class_names, empty = list_identity_folder(root)
    return FileSource(root, "folder", paths, labels, class_names, name, empty)


def read_list(list_path, root=None):
    """Lines `relative_path<TAB>identity` → (paths under `root`, labels, class_names sorted by name).

    `root` defaults to the list file's folder; blank lines and lines starting with # are ignored.
    """
    list_path = Path(list_path)
    root = Path(root) if root is not None else list_path.parent
    if not list_path.is_file():
        raise FileNotFoundError(f"{list_path}: no such list file")
    rows = []
    for number, line in enumerate(list_path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not all(f.strip() for f in fields):
            raise ValueError(f"{list_path}:{number}: expected 'relative_path<TAB>identity', got {line!r}")
        rows.append((str(root / fields[0].strip()), fields[1].strip()))
    if not rows:
        raise ValueError(f"{list_path}: no images listed")
    class_names = sorted({identity for _, identity in rows})
    label_of = {identity: label for label, identity in enumerate(class_names)}
    return [p for p, _ in rows], [label_of[identity] for _, identity in rows], class_names


def list_source(list_path, root=None, name=None):
    paths, labels, class_names = read_list(list_path, root)
    return FileSource(list_path, "list", paths, labels, class_names, name or default_name(root or list_path))


def rec_source(rec_path, idx_path=None, name=None):
    return RecSource(rec_path, idx_path, name)


def label_space(sources):
    """Label offsets (classes of the sources before) and class names, source-prefixed if names collide."""
    given = [source.name for source in sources]
    names = [f"{name}-{given[:i].count(name) + 1}" if name in given[:i] else name  # train, train-2 …
             for i, name in enumerate(given)]
    offsets = np.cumsum([0] + [source.num_classes for source in sources])[:-1].tolist()
    class_names = [n for source in sources for n in source.class_names]
    if len(set(class_names)) < len(class_names):
        class_names = [f"{name}/{n}" for name, source in zip(names, sources) for n in source.class_names]
    return names, offsets, class_names


class SkippedImage(ValueError):
    """An image left out of the conversion: empty, truncated, unreadable or not decodable."""


def encoded_image(data, reencode_quality=None):
    """Checked image bytes: the original JPEG/PNG, or a JPEG re-encoded at `reencode_quality`.

    Other formats are always re-encoded (at 95 unless told). Raises SkippedImage for an empty, truncated
    (data/integrity.py) or undecodable image.
    """
    try:
        image = read_bgr(data)  # a JPEG cut short would stop training at tf.io.decode_jpeg: skipped here
    except UnreadableImage as error:
        raise SkippedImage(str(error)) from None
    if reencode_quality is None and (data.startswith(JPEG_START) or data.startswith(PNG_START)):
        return data
    quality = DEFAULT_JPEG_QUALITY if reencode_quality is None else int(reencode_quality)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SkippedImage("could not be re-encoded as JPEG")
    return encoded.tobytes()


def convert(sources, out_dir, num_shards=16, workers=2, reencode_quality=None, shuffle=True, seed=0,
            progress=True):
    """Write every source into one sharded TFRecord set with one label space; returns the manifest.

    Source k's labels are offset by the classes of sources 0..k−1. Images go in shuffled order
    (with `seed`) unless `shuffle` is False. Bad images are skipped, and identities left with no
    usable image get no label (labels stay dense); both are listed in `skipped.csv` and counted in
    the manifest, with the largest label (`max_label`, for a cheap check at load). The manifest is
    written last: a folder with one is complete. ValueError, and no shard left, when fewer than
    MIN_CLASSES identities have an image (nothing is written when the sources list fewer).
    """
    if not sources:
        raise ValueError("no sources to convert: give at least one identity folder, list file or .rec file")
    out_dir = Path(out_dir)
    names, offsets, class_names = label_space(sources)
    where = ", ".join(source.path for source in sources)
    if len(class_names) < MIN_CLASSES:
        found = f"{len(class_names)} identit{'y' if len(class_names) == 1 else 'ies'}"
        raise ValueError(f"{where}: found {found}, training needs at least {MIN_CLASSES}")
    (out_dir / MANIFEST).unlink(missing_ok=True)  # the folder is incomplete until the new manifest lands
    order = read_order([len(source) for source in sources], shuffle, seed)
    skipped, images_per_class, lock = [], np.zeros(len(class_names), np.int64), threading.Lock()

    def prepare(item):
        s, i = item
        try:
            data, label = sources[s].read(i)
            encoded, label = encoded_image(data, reencode_quality), label + offsets[s]
        except (OSError, SkippedImage, recordio.RecordIOError) as error:
            with lock:
                skipped.append((names[s], sources[s].describe(i), str(error) or type(error).__name__))
            return None
        with lock:
            images_per_class[label] += 1
        return encoded, label

    bar = tqdm(order, total=len(order), desc=f"writing {out_dir}", unit="img", disable=not progress)
    shards = write_records(bar, out_dir, num_shards, workers=workers, prepare=prepare)
    skipped.sort()
    empty = empty_identities(sources, names, offsets, images_per_class)
    write_skipped(out_dir / "skipped.csv", skipped + empty)
    kept = images_per_class > 0
    if kept.sum() < MIN_CLASSES:
        for shard in shards:
            (out_dir / shard).unlink()
        raise ValueError((f"no usable image in {where}" if not kept.any() else
                          f"1 identity with a usable image in {where}, training needs at least {MIN_CLASSES}")
                         + f": see {out_dir / 'skipped.csv'}")
    if not kept.all():
        relabel_shards(out_dir, shards, np.cumsum(kept) - 1)
    manifest = {
        "num_classes": int(kept.sum()), "max_label": int(kept.sum()) - 1, "num_images": sum(shards.values()),
        "class_names": [n for n, keep in zip(class_names, kept) if keep],
        "sources": source_entries(sources, names, offsets, kept, skipped, empty), "shards": shards,
        "skipped": len(skipped), "empty_identities": len(empty), "reencode_quality": reencode_quality,
    }
    write_json(out_dir / MANIFEST, manifest)
    return manifest


def read_order(sizes, shuffle, seed):
    """[(source, index)] of every image of sources with `sizes` images, shuffled by `seed` if `shuffle`."""
    which = np.repeat(np.arange(len(sizes)), sizes)
    index = np.concatenate([np.arange(size) for size in sizes])
    if shuffle:
        permutation = np.random.default_rng(seed).permutation(len(which))
        which, index = which[permutation], index[permutation]
    return [(int(s), int(i)) for s, i in zip(which, index)]


def empty_identities(sources, names, offsets, images_per_class):
    """(source name, identity, reason) of identities without any image written: they get no label."""
    rows = []
    for name, source, offset in zip(names, sources, offsets):
        rows += [(name, identity, "no image files") for identity in source.empty_classes]
        rows += [(name, identity, "no usable image") for k, identity in enumerate(source.class_names)
                 if not images_per_class[offset + k]]
    return rows


def source_entries(sources, names, offsets, kept, skipped, empty):
    """The manifest's per-source entries, with offsets and class counts of the labels kept."""
    entries = []
    for name, source, offset in zip(names, sources, offsets):
        bad = sum(row[0] == name for row in skipped)
        entries.append({**source.entry(int(kept[:offset].sum()), len(source) - bad), "name": name, "skipped": bad,
                        "num_classes": int(kept[offset:offset + source.num_classes].sum()),
                        "empty_identities": sum(row[0] == name for row in empty)})
    return entries


def write_skipped(path, rows):
    """skipped.csv (source, item, reason); removed when nothing was skipped."""
    if not rows:
        Path(path).unlink(missing_ok=True)
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "item", "reason"])
        writer.writerows(rows)
