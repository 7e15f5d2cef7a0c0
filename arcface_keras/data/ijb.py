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


def _rows(path, columns):
    """Whitespace-separated rows of `columns` fields (first a name), as a list of split lines."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing protocol file")
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    for number, row in enumerate(rows, start=1):
        if len(row) != columns:
            raise ValueError(f"{path}:{number}: expected {columns} fields, found {len(row)}")
    if not rows:
        raise ValueError(f"{path}: empty")
    return rows


def _named_values(path, columns, dtype, what):
    """(names, (N, columns - 1) values) of rows that start with a name; one line naming the file if a value is bad."""
    rows = _rows(path, columns)
    try:
        values = np.array([row[1:] for row in rows], dtype)
    except ValueError as error:
        raise ValueError(f"{path}: {what} ({error})") from None
    return [row[0] for row in rows], values


def read_landmarks(path):
    """(names, (N, 5, 2) landmarks, (N,) detector scores) of a *_name_5pts_score.txt."""
    names, values = _named_values(path, 12, np.float32, "non-numeric landmark or score")
    return names, values[:, :10].reshape(-1, 5, 2), values[:, 10]


def read_template_media(path):
    """(names, template ids, media ids) of a *_face_tid_mid.txt."""
    names, ids = _named_values(path, 3, np.int64, "non-integer template or media id")
    return names, ids[:, 0], ids[:, 1]


def read_pairs(path):
    """((P, 2) template ids, (P,) bool labels) of a *_template_pair_label.txt (15.7M lines for IJB-C)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing protocol file")
    values = np.fromstring(path.read_bytes().decode("ascii"), dtype=np.int64, sep=" ")
    if values.size == 0 or values.size % 3:
        raise ValueError(f"{path}: expected lines of 'template template label', read {values.size} numbers")
    values = values.reshape(-1, 3)
    if not np.isin(values[:, 2], (0, 1)).all():
        raise ValueError(f"{path}: labels must be 0 or 1")
    return values[:, :2], values[:, 2].astype(bool)


def read_subject_list(path):
    """(unique template ids, their subject ids) of a 1:N gallery or probe .csv."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines or not lines[0].upper().startswith("TEMPLATE_ID"):
        raise ValueError(f"{path}: expected a header TEMPLATE_ID,SUBJECT_ID,...")
    try:
        ids = np.array([line.split(",")[:2] for line in lines[1:]], np.int64)
    except ValueError as error:
        raise ValueError(f"{path}: non-integer template or subject id ({error})") from None
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
