"""Verification sets: LFW-style pairs.txt over an image folder, insightface `.bin` files, generated pairs.

Every loader returns `(images, issame)`: uint8 RGB images (2N, H, W, 3) with the pairs interleaved
(images[0::2] against images[1::2]) and a bool array (N,).

pairs.txt lines are `name n1 n2` (same identity) or `name1 n1 name2 n2` (different), optionally
under a header line `folds pairs_per_half` (LFW's "10 300") or `pairs_per_half`. Image number n
of identity `name` is `<root>/<name>/<name>_<nnnn>.jpg` (LFW naming), by name only: when that file
is missing from a folder that names its images so (a photo that failed detection, say), it is an
error naming the file, never another photo of the folder. Only a folder without any LFW-named
image (e.g. `img001.png`, ...) numbers its images by sorted position, as make_pairs numbers them.
"""
import codecs
import importlib.util
import io
import pickle
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from arcface_keras.data.decode import decode_rgb
from arcface_keras.data.folders import is_image_file
from arcface_keras.io import atomic_path

PAIRS_TXT = "pairs.txt"
_NUMPY_CORE = "numpy._core" if importlib.util.find_spec("numpy._core") else "numpy.core"
# The only globals a .bin of encoded images and booleans needs: bytes at protocol < 3, numpy arrays and
# scalars (numpy.core.* in files written before numpy 2, numpy._core.* after).
_PLAIN_GLOBALS = {("_codecs", "encode"): codecs.encode, ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
_NUMPY_CORE_GLOBALS = {("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")}


class Pair(NamedTuple):
    name1: str
    n1: int
    name2: str
    n2: int
    issame: bool
    line: int = 0  # line in pairs.txt, 0 for generated pairs


# --- pairs.txt ------------------------------------------------------------------------------------


def _pair_from_tokens(tokens, where):
    try:
        if len(tokens) == 3:
            return Pair(tokens[0], int(tokens[1]), tokens[0], int(tokens[2]), True)
        if len(tokens) == 4:
            return Pair(tokens[0], int(tokens[1]), tokens[2], int(tokens[3]), False)
    except ValueError:
        pass
    raise ValueError(f"{where}: expected 'name n1 n2' or 'name1 n1 name2 n2', got {' '.join(tokens)!r}")


def parse_pairs_txt(path):
    """Pairs listed in an LFW-style pairs.txt (with or without its header line), in file order."""
    path = Path(path)
    pairs, header = [], None
    for number, text in enumerate(path.read_text().splitlines(), 1):
        tokens = text.split()
        if not tokens:
            continue
        if not pairs and header is None and len(tokens) <= 2 and all(t.isdigit() for t in tokens):
            header = [int(t) for t in tokens]
            continue
        pair = _pair_from_tokens(tokens, f"{path}:{number}")._replace(line=number)
        if pair.n1 < 1 or pair.n2 < 1:
            raise ValueError(f"{path}:{number}: image numbers start at 1, got {text.strip()!r}")
        pairs.append(pair)
    if header is not None and len(pairs) != 2 * int(np.prod(header)):
        raise ValueError(f"{path}: header {' '.join(map(str, header))} announces {2 * int(np.prod(header))} pairs, found {len(pairs)}")
    if not pairs:
        raise ValueError(f"{path}: no pairs found")
    return pairs


def write_pairs_txt(path, folds):
    """Write folds of pairs (each: its same pairs, then as many different ones) in LFW's header format."""
    half = len(folds[0]) // 2
    lines = [f"{len(folds)}\t{half}"]
    for k, fold in enumerate(folds):
        if [p.issame for p in fold] != [True] * half + [False] * half:
            raise ValueError(f"fold {k}: expected {half} same pairs followed by {half} different pairs")
        for p in fold:
            fields = (p.name1, p.n1, p.n2) if p.issame else (p.name1, p.n1, p.name2, p.n2)
            lines.append("\t".join(map(str, fields)))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


# --- images of an identity folder -------------------------------------------------------------------


def identity_images(folder):
    """Image files of one identity folder, in sorted order."""
    return sorted(p for p in Path(folder).rglob("*") if is_image_file(p))


def _lfw_path(root, name, number):
    return Path(root) / name / f"{name}_{number:04d}.jpg"


def lfw_named(name, images):
    """Whether any of an identity's images is `<name>/<name>_<nnnn>.jpg`."""
    pattern = re.compile(rf"{re.escape(name)}_\d{{4}}\.jpg")
    return any(pattern.fullmatch(image.name) and image.parent.name == name for image in images)


def resolve_image(root, name, number, images):
    """Path of image `number` of identity `name` (None when there is none): `<name>_<nnnn>.jpg` in a folder
    of LFW-named images, else images[number - 1] of a folder without any."""
    lfw = _lfw_path(root, name, number)
    if lfw.is_file():
        return lfw
    if lfw_named(name, images):
        return None
    return images[number - 1] if number <= len(images) else None


def missing_image(root, name, number, images):
    """Why image `number` of identity `name` cannot be resolved, naming the file looked for."""
    lfw = _lfw_path(root, name, number)
    if lfw_named(name, images):
        return f"no image {number} of {name!r}: {lfw} does not exist (images are resolved by name only)"
    return (f"no image {number} of {name!r}: neither {lfw} exists nor has {Path(root) / name} {number} images "
            f"(it has {len(images)})")


def pair_paths(pairs, root, source):
    """Resolve pairs to interleaved image paths (2N) and issame (N,); errors name `source` and the line."""
    root = Path(root)
    listings, paths = {}, []
    for pair in pairs:
        for name, number in ((pair.name1, pair.n1), (pair.name2, pair.n2)):
            if name not in listings:
                listings[name] = identity_images(root / name)
            path = resolve_image(root, name, number, listings[name])
            if path is None:
                raise FileNotFoundError(f"{source}:{pair.line}: {missing_image(root, name, number, listings[name])}")
            paths.append(path)
    return paths, np.array([p.issame for p in pairs], bool)


# --- loading --------------------------------------------------------------------------------------


def _stack(images, wheres):
    shape = images[0].shape
    for image, where in zip(images, wheres):
        if image.shape != shape:
            raise ValueError(f"{where}: image is {image.shape[1]}x{image.shape[0]}, expected {shape[1]}x{shape[0]} like the first")
    return np.stack(images)


def load_pairs(pairs_txt, root=None):
    """Images and issame of a pairs.txt; images under `root` (default: the file's directory)."""
    pairs_txt = Path(pairs_txt)
    return load_pair_list(parse_pairs_txt(pairs_txt), root or pairs_txt.parent, pairs_txt)


def load_pair_list(pairs, root, source):
    """Images and issame of Pair records whose images lie under `root`; errors name `source`."""
    paths, issame = pair_paths(pairs, root, source)
    return _stack([decode_rgb(p.read_bytes(), p) for p in paths], paths), issame


# --- insightface .bin -----------------------------------------------------------------------------


class UnsafeBinError(ValueError):
    """A .bin names a global that a pickle of images and booleans never needs."""


class _BinUnpickler(pickle.Unpickler):
    """Unpickler that only knows the globals of (list of encoded images, list of booleans)."""

    def __init__(self, file, source):
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module, name):
        if (module, name) in _PLAIN_GLOBALS:
            return _PLAIN_GLOBALS[module, name]
        for prefix in ("numpy.core.", "numpy._core."):
            submodule = module.removeprefix(prefix)
            if submodule != module and (submodule, name) in _NUMPY_CORE_GLOBALS:
                return super().find_class(f"{_NUMPY_CORE}.{submodule}", name)
        raise UnsafeBinError(
            f"{self.source}: refusing to load global {module}.{name} (a verification .bin holds only "
            "encoded images and booleans)"
        )


def read_bin(path):
    """(encoded images, issame) of an insightface .bin, unpickled without running any code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .bin file")
    try:
        data = _BinUnpickler(io.BytesIO(path.read_bytes()), path).load()
    except UnsafeBinError:
        raise
    except Exception as error:  # a damaged pickle can fail in many ways; all mean the same here
        raise ValueError(f"{path}: not a readable pickle ({type(error).__name__}: {error})") from None
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, list) for d in data)):
        raise ValueError(f"{path}: expected a pickled (list of encoded images, list of booleans)")
    bins, issame = data
    if not all(isinstance(s, (bool, np.bool_)) for s in issame):
        raise ValueError(f"{path}: the second list must hold booleans")
    if not issame:
        raise ValueError(f"{path}: no pairs")
    if len(bins) < 2 * len(issame):
        raise ValueError(f"{path}: {len(issame)} pairs need {2 * len(issame)} images, found {len(bins)}")
    return bins[: 2 * len(issame)], np.array(issame, bool)


def load_bin(path):
    """Images and issame of an insightface verification .bin (lfw.bin, cfp_fp.bin, agedb_30.bin, ...)."""
    bins, issame = read_bin(path)
    wheres = [f"{path}: image {i}" for i in range(len(bins))]
    return _stack([decode_rgb(b, w) for b, w in zip(bins, wheres)], wheres), issame


def write_bin(path, images_encoded, issame):
    """Write (list of encoded image bytes, list of bool) as insightface reads it (pickle protocol 4)."""
    bins, issame = [bytes(b) for b in images_encoded], [bool(s) for s in issame]
    if len(bins) != 2 * len(issame):
        raise ValueError(f"{path}: {len(issame)} pairs need {2 * len(issame)} images, got {len(bins)}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(pickle.dumps((bins, issame), protocol=4))


# --- generated pairs ------------------------------------------------------------------------------


def numbered_images(root, name):
    """Pair numbers that resolve to each image of identity `name` (images no number reaches are left out)."""
    images = identity_images(Path(root) / name)
    numbers = []
    for position, image in enumerate(images, 1):
        match = re.fullmatch(rf"{re.escape(name)}_(\d{{4}})\.jpg", image.name)
        for number in ([int(match[1])] if match else []) + [position]:
            if resolve_image(root, name, number, images) == image:
                numbers.append(number)
                break
    return numbers


def _draw_unique(draw, count, capacity, what, rng):
    if capacity < count:
        raise ValueError(f"{what}: only {capacity} distinct pairs exist, {count} requested; ask for fewer pairs or folds")
    found, attempts = {}, 0
    while len(found) < count:
        if attempts == 1000 * count + 10_000:
            raise ValueError(f"{what}: could not draw {count} distinct pairs; ask for fewer pairs or folds")
        attempts += 1
        pair = draw(rng)
        found.setdefault((pair.name1, pair.n1, pair.name2, pair.n2), pair)
    return list(found.values())


def _fold_pairs(names, numbers, half, rng, what):
    repeated = [n for n in names if len(numbers[n]) >= 2]

    def same(rng):
        name = repeated[rng.integers(len(repeated))]
        a, b = sorted(rng.choice(len(numbers[name]), 2, replace=False))
        return Pair(name, numbers[name][a], name, numbers[name][b], True)

    def different(rng):
        i, j = sorted(rng.choice(len(names), 2, replace=False))
        n1, n2 = numbers[names[i]], numbers[names[j]]
        return Pair(names[i], n1[rng.integers(len(n1))], names[j], n2[rng.integers(len(n2))], False)

    counts = np.array([len(numbers[n]) for n in names])
    same_capacity = int((counts * (counts - 1) // 2).sum())
    different_capacity = int((counts.sum() ** 2 - (counts**2).sum()) // 2)
    return _draw_unique(same, half, same_capacity, f"{what} same", rng) + _draw_unique(
        different, half, different_capacity, f"{what} different", rng
    )


def make_pairs(identity_root, num_pairs=6000, folds=10, seed=0):
    """Deterministic LFW-like pairs of an identity folder: `folds` lists of Pair, each half same, half different.

    Identities are shuffled (by `seed`) and dealt to the folds, so no identity appears in two folds.
    """
    root = Path(identity_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory of identity folders")
    if num_pairs <= 0 or num_pairs % (2 * folds):
        raise ValueError(f"num_pairs={num_pairs} must be a positive multiple of 2 * folds = {2 * folds}")
    numbers = {p.name: numbered_images(root, p.name) for p in sorted(root.iterdir()) if p.is_dir()}
    names = [name for name, found in numbers.items() if found]
    if len(names) < 2 * folds:
        raise ValueError(f"{root}: {len(names)} identities with images, at least {2 * folds} needed for {folds} folds")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    groups = [[names[i] for i in sorted(order[k::folds])] for k in range(folds)]
    half = num_pairs // (2 * folds)
    return [_fold_pairs(group, numbers, half, rng, f"{root} fold {k}") for k, group in enumerate(groups)]


def load_generated_pairs(identity_root, num_pairs=6000, folds=10, seed=0):
    """Images and issame of pairs generated by make_pairs over an identity folder."""
    pairs = [p for fold in make_pairs(identity_root, num_pairs, folds, seed) for p in fold]
    return load_pair_list(pairs, identity_root, identity_root)


# --- dispatch -------------------------------------------------------------------------------------


def load_verification_set(path, root=None):
    """Load a `.bin` file, a pairs.txt file (images under `root`, default its directory) or a directory holding pairs.txt."""
    path = Path(path)
    if path.suffix == ".bin":
        return load_bin(path)
    if path.is_file():
        return load_pairs(path, root)
    if path.is_dir():
        if not (path / PAIRS_TXT).is_file():
            raise FileNotFoundError(f"{path}: no {PAIRS_TXT} inside (make one with tools/make_pairs.py)")
        return load_pairs(path / PAIRS_TXT, root or path)
    raise FileNotFoundError(f"{path}: no such .bin, pairs.txt or directory")
