"""The IJB-B / IJB-C protocol files as insightface distributes them, read into arrays.

    <root>/loose_crop/<image>.jpg                       face crops, a margin around each face
    <root>/meta/<t>_name_5pts_score.txt                 image x1 y1 ... x5 y5 detector_score
    <root>/meta/<t>_face_tid_mid.txt                    image template_id media_id
    <root>/meta/<t>_template_pair_label.txt             template_id template_id label (1 same, 0 not)
    <root>/meta/<t>_1N_gallery_G1.csv, _G2.csv          1:N galleries (IJB-B: _S1, _S2), with a header:
    <root>/meta/<t>_1N_probe_mixed.csv                  TEMPLATE_ID,SUBJECT_ID,FILENAME,...

`<t>` is ijbc or ijbb. The landmarks are in the order left eye, right eye, nose, left and right mouth
corner. The 1:N files are optional: without them only 1:1 verification runs.
"""
import dataclasses
import io
import warnings
from pathlib import Path

import numpy as np

TARGETS = ("ijbc", "ijbb")


@dataclasses.dataclass
class IJBProtocol:
    root: Path
    target: str
    names: list  # image file names under loose_crop/
    landmarks: np.ndarray  # (N, 5, 2) float32
    scores: np.ndarray  # (N,) float32 detector scores
    templates: np.ndarray  # (N,) int64 template of each image
    medias: np.ndarray  # (N,) int64 media (photo or video) of each image
    pairs: np.ndarray  # (P, 2) int64 template ids
    labels: np.ndarray  # (P,) bool: same subject
    galleries: dict  # name -> (template ids, subject ids)
    probes: tuple  # (template ids, subject ids), or None without 1:N files


def find_target(meta):
    """ijbc or ijbb, from which *_face_tid_mid.txt the meta folder holds."""
    found = [t for t in TARGETS if (meta / f"{t}_face_tid_mid.txt").is_file()]
    if len(found) != 1:
        raise FileNotFoundError(f"{meta}: expected exactly one of {[f'{t}_face_tid_mid.txt' for t in TARGETS]}")
    return found[0]


def _lines(path):
    """(line number, fields) of each non-blank line of a whitespace-separated protocol file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing protocol file")
    rows = [(number, line.split()) for number, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    if not rows:
        raise ValueError(f"{path}: empty")
    return rows


def _bad_field(fields, kinds):
    """What is wrong with one line's fields against `kinds` (a type per column), or None."""
    if len(fields) != len(kinds):
        return f"expected {len(kinds)} fields, found {len(fields)}"
    for field, kind in zip(fields, kinds):
        try:
            kind(field)
        except ValueError:
            return f"{field!r} is not {'an integer' if kind is int else 'a number'}"
    return None


def _named_values(path, kinds, dtype):
    """(names, (N, len(kinds) - 1) values) of lines that start with a name; errors name the file and line."""
    rows = _lines(path)
    for number, fields in rows:
        if len(fields) != len(kinds):
            raise ValueError(f"{path}:{number}: expected {len(kinds)} fields, found {len(fields)}")
    try:
        values = np.array([fields[1:] for _, fields in rows], dtype)
    except ValueError as error:  # name the first line numpy could not read
        found = next((f"{number}: {p}" for number, p in ((n, _bad_field(f, kinds)) for n, f in rows) if p), f" {error}")
        raise ValueError(f"{path}:{found}") from None
    return [fields[0] for _, fields in rows], values


def read_landmarks(path):
    """(names, (N, 5, 2) landmarks, (N,) detector scores) of a *_name_5pts_score.txt."""
    names, values = _named_values(path, (str,) + (float,) * 11, np.float32)
    return names, values[:, :10].reshape(-1, 5, 2), values[:, 10]


def read_template_media(path):
    """(names, template ids, media ids) of a *_face_tid_mid.txt."""
    names, ids = _named_values(path, (str, int, int), np.int64)
    return names, ids[:, 0], ids[:, 1]


def _pair_line_problem(fields):
    return _bad_field(fields, (int, int, int)) or (None if fields[2] in ("0", "1") else "the label must be 0 or 1")


def read_pairs(path):
    """((P, 2) template ids, (P,) bool labels) of a *_template_pair_label.txt (15.7M lines for IJB-C).

    Read by numpy in one pass; when that finds anything but lines of three integers and a 0/1 label,
    the file is read again line by line to name the first bad line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing protocol file")
    text = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns, and stops, at the first text that is not a number
        try:
            values = np.fromstring(text.decode("ascii"), dtype=np.int64, sep=" ")
        except (DeprecationWarning, ValueError, UnicodeDecodeError):
            values = None
    lines = text.count(b"\n") + (not text.endswith(b"\n"))
    if values is None or values.size != 3 * lines or not np.isin(values[2::3], (0, 1)).all():
        for number, line in enumerate(io.BytesIO(text), 1):
            fields = line.decode("ascii", "replace").split()
            problem = fields and _pair_line_problem(fields)
            if problem:
                raise ValueError(f"{path}:{number}: {problem}; expected 'template template label', "
                                 f"got {line.strip()[:80].decode('ascii', 'replace')!r}")
        if values is None or values.size % 3:  # unreachable unless numpy and Python disagree on a number
            raise ValueError(f"{path}: expected lines of 'template template label'")
    if values.size == 0:
        raise ValueError(f"{path}: empty")
    values = values.reshape(-1, 3)
    return values[:, :2], values[:, 2].astype(bool)


def read_subject_list(path):
    """(unique template ids, their subject ids) of a 1:N gallery or probe .csv."""
    lines = [(number, line) for number, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    if not lines or not lines[0][1].upper().startswith("TEMPLATE_ID"):
        raise ValueError(f"{path}: expected a header TEMPLATE_ID,SUBJECT_ID,...")
    for number, line in lines[1:]:
        problem = _bad_field(line.split(",")[:2], (int, int))
        if problem:
            raise ValueError(f"{path}:{number}: {problem} (TEMPLATE_ID,SUBJECT_ID,... expected)")
    ids = np.array([line.split(",")[:2] for _, line in lines[1:]], np.int64).reshape(-1, 2)
    templates, first = np.unique(ids[:, 0], return_index=True)
    subjects = ids[first, 1]
    mixed = ids[:, 1] != subjects[np.searchsorted(templates, ids[:, 0])]
    if mixed.any():
        raise ValueError(f"{path}: template {ids[mixed][0, 0]} is listed with two subjects")
    return templates, subjects


def _join(names, other_names, meta):
    """Index into `other_names` of each name (the two files list the same images)."""
    if names == other_names:
        return np.arange(len(names))
    position = {name: i for i, name in enumerate(other_names)}
    missing = [name for name in names if name not in position]
    if missing:
        raise ValueError(f"{meta}: image {missing[0]} has a template but no landmarks ({len(missing)} in all)")
    return np.array([position[name] for name in names])


def load_ijb(root, target=None):
    """Read every protocol file of an IJB-B/C folder; fail naming the first bad file or line."""
    root = Path(root)
    meta = root / "meta"
    target = (target or find_target(meta)).lower()
    if target not in TARGETS:
        raise ValueError(f"target {target!r}: expected one of {TARGETS}")
    names, templates, medias = read_template_media(meta / f"{target}_face_tid_mid.txt")
    landmark_names, landmarks, scores = read_landmarks(meta / f"{target}_name_5pts_score.txt")
    index = _join(names, landmark_names, meta)
    pairs, labels = read_pairs(meta / f"{target}_template_pair_label.txt")
    unknown = np.setdiff1d(pairs.ravel(), templates)
    if unknown.size:
        raise ValueError(f"{meta}: template {unknown[0]} of the pair list has no images ({unknown.size} in all)")
    galleries = {path.stem.rsplit("_", 1)[-1]: read_subject_list(path)
                 for path in sorted(meta.glob(f"{target}_1N_gallery_*.csv"))}
    probe_path = meta / f"{target}_1N_probe_mixed.csv"
    probes = read_subject_list(probe_path) if galleries and probe_path.is_file() else None
    return IJBProtocol(root, target, names, landmarks[index], scores[index], templates, medias, pairs, labels,
                       galleries if probes is not None else {}, probes)
