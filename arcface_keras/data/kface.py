"""K-Face (AI Hub): pick images by accessory, lighting, expression and camera, split each person.

K-Face keeps every person as nested folders, e.g. `<person>/S001/L1/E01/C7.jpg`. The layout is a
pattern with the fields {person}, {accessory}, {lighting}, {expression}, {camera}, so another release
with other folder names only needs another pattern. Selections are value lists and ranges such as
"L1-L3" or "S001,S002,S005"; only the selected folders are walked.
"""
import csv
import io
import os
import re
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from arcface_keras.io import atomic_path, write_text

DEFAULT_LAYOUT = "{person}/{accessory}/{lighting}/{expression}/{camera}.jpg"
FIELDS = ("person", "accessory", "lighting", "expression", "camera")
_FIELD = re.compile(r"\{(\w+)\}")
_NUMBERED = re.compile(r"^(\D*)(\d+)$")


@dataclass(frozen=True)
class KFaceImage:
    """One image: its path relative to the root and its field values (a dict, field -> value)."""

    path: str
    fields: dict

    @property
    def person(self):
        return self.fields["person"]

    @property
    def flat_name(self):
        """A file name unique within the person, e.g. S001_L1_E01_C7.jpg."""
        values = [value for name, value in self.fields.items() if name != "person"]
        return "_".join(values) + Path(self.path).suffix


class ValueSet:
    """Field values given as a comma list of names and ranges: "S001,S002,S005", "L1-L3", "C5-C10,C20".

    A range matches values with the same prefix and a number inside it, whatever the zero padding.
    """

    def __init__(self, spec):
        self.spec = spec
        self.names, self.ranges = set(), []
        for item in (part.strip() for part in spec.split(",")):
            low, dash, high = item.partition("-")
            low_match, high_match = _NUMBERED.match(low), _NUMBERED.match(high)
            if not item:
                raise ValueError(f"selection {spec!r}: empty item")
            if not dash:
                self.names.add(item)
            elif low_match and high_match and high_match.group(1) in ("", low_match.group(1)):
                self.ranges.append((low_match.group(1), int(low_match.group(2)), int(high_match.group(2))))
            else:
                raise ValueError(f"selection {spec!r}: range {item!r} must look like L1-L3 (same prefix, numbers)")

    def __contains__(self, value):
        if value in self.names:
            return True
        match = _NUMBERED.match(value)
        return bool(match) and any(
            match.group(1) == prefix and low <= int(match.group(2)) <= high for prefix, low, high in self.ranges
        )

    def __repr__(self):
        return f"ValueSet({self.spec!r})"


def _segment_patterns(layout):
    """One regex per path segment of `layout`, fields as named groups (literal parts ignore case)."""
    fields = _FIELD.findall(layout)
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown or "person" not in fields or len(fields) != len(set(fields)):
        raise ValueError(
            f"layout {layout!r}: expected {{person}} once and optionally {{accessory}}, {{lighting}}, "
            f"{{expression}} and {{camera}} once each, e.g. {DEFAULT_LAYOUT}"
        )
    patterns = []
    for segment in layout.split("/"):
        regex = "".join(
            f"(?P<{piece}>[^/]+?)" if i % 2 else re.escape(piece) for i, piece in enumerate(_FIELD.split(segment))
        )
        patterns.append(re.compile(regex, re.IGNORECASE))
    return patterns


def scan(root, layout=DEFAULT_LAYOUT, selection=None):
    """The images under `root` matching `layout` whose fields are in `selection` (field -> ValueSet or
    spec string; fields left out take every value), sorted by path. Folders are pruned while walking."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: K-Face root is not a directory")
    selection = {name: ValueSet(spec) if isinstance(spec, str) else spec for name, spec in (selection or {}).items()}
    unknown = sorted(set(selection) - set(FIELDS))
    if unknown:
        raise ValueError(f"selection fields {unknown}: expected some of {', '.join(FIELDS)}")
    patterns, names = _segment_patterns(layout), _FIELD.findall(layout)
    found = []

    def walk(directory, depth, parts, fields):
        is_last = depth == len(patterns) - 1
        with os.scandir(directory) as entries:
            for entry in entries:
                match = patterns[depth].fullmatch(entry.name)
                if not match or entry.is_dir() == is_last:
                    continue
                here = match.groupdict()
                if any(name in selection and value not in selection[name] for name, value in here.items()):
                    continue
                values = {**fields, **here}
                if is_last:
                    found.append(KFaceImage("/".join(parts + [entry.name]), {name: values[name] for name in names}))
                else:
                    walk(entry.path, depth + 1, parts + [entry.name], values)

    walk(root, 0, [], {})
    return sorted(found, key=lambda image: image.path)


def group_by_person(images):
    """person -> list of images, persons sorted."""
    groups = {}
    for image in images:
        groups.setdefault(image.person, []).append(image)
    return dict(sorted(groups.items()))


def split(images, train=None, test=None, test_ratio=None, seed=0, drop_short=False):
    """Split each person's images into train and test, deterministically for a given seed.

    By count (`test`, and `train`, else the rest to train) or by `test_ratio` of each person's images
    (rounded). A person's order is shuffled by a generator seeded with (seed, person), so adding or
    removing persons changes no one else's split. With counts, persons with fewer than train + test
    images are "short": test is filled first, then train; `drop_short` leaves them out.
    Returns (train_images, test_images, counts) where counts maps person -> dict(selected, train, test, short).
    """
    if (test is None) == (test_ratio is None):
        raise ValueError("split: give either a test count or a test ratio")
    if test_ratio is not None and not 0 <= test_ratio <= 1:
        raise ValueError(f"test ratio {test_ratio}: expected a fraction in [0, 1]")
    train_out, test_out, counts = [], [], {}
    for person, group in group_by_person(images).items():
        rng = np.random.default_rng([seed, zlib.crc32(person.encode())])
        order = [group[i] for i in rng.permutation(len(group))]
        if test_ratio is not None:
            n_test, n_train, short = round(len(order) * test_ratio), len(order), False
        else:
            n_test, n_train = test, len(order) if train is None else train
            short = len(order) < test + (train or 0)
        chosen_test = order[:n_test]
        chosen_train = order[n_test : n_test + n_train]
        counts[person] = dict(selected=len(group), train=len(chosen_train), test=len(chosen_test), short=short)
        if short and drop_short:
            continue
        train_out += sorted(chosen_train, key=lambda image: image.path)
        test_out += sorted(chosen_test, key=lambda image: image.path)
    return train_out, test_out, counts


def write_split(out_dir, train, test, counts, needed=None):
    """Write train.txt and test.txt (`relative_path<TAB>person`), counts.csv (person, selected, train,
    test, short) and below_count.csv (person, selected, needed: the short persons). Returns the paths."""
    out_dir = Path(out_dir)
    paths = {}
    for name, images in (("train", train), ("test", test)):
        paths[name] = out_dir / f"{name}.txt"
        write_text(paths[name], "".join(f"{image.path}\t{image.person}\n" for image in images))
    paths["counts"] = out_dir / "counts.csv"
    rows = [(p, c["selected"], c["train"], c["test"], int(c["short"])) for p, c in counts.items()]
    write_text(paths["counts"], _csv_text(("person", "selected", "train", "test", "short"), rows))
    paths["below_count"] = out_dir / "below_count.csv"
    rows = [(p, c["selected"], needed) for p, c in counts.items() if c["short"]]
    write_text(paths["below_count"], _csv_text(("person", "selected", "needed"), rows))
    return paths


def copy_split(root, out_dir, train, test, progress=True):
    """Copy the images into identity folders `out_dir/train/<person>/<flat_name>` and `out_dir/test/...`."""
    root, out_dir = Path(root), Path(out_dir)
    jobs = [(name, image) for name, images in (("train", train), ("test", test)) for image in images]
    for name, image in tqdm(jobs, disable=not progress, unit="img"):
        target = out_dir / name / image.person / image.flat_name
        with atomic_path(target) as tmp:
            shutil.copyfile(root / image.path, tmp)


def _csv_text(header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()
