"""Batch face cropping: detect, keep one face, align (or box-crop), write identity folders of crops.

Every image under an input tree is processed into `<out>/<identity>/...` (the input's relative path
when the identity is its first folder). Bad images are skipped and listed in a failures CSV with a
reason; outputs are written atomically, so a stopped run can be resumed. The work per photo is
bounded whatever its size (faces/photo.py). With `fallback`, a photo where no face is found gets
insightface's centre crop instead (align.center_crop), counted and listed, so that every photo has a crop.
"""
import collections
import csv
import io
import multiprocessing
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from arcface_keras.data.folders import IMAGE_SUFFIXES, is_image_file
from arcface_keras.faces import align, detect, photo
from arcface_keras.io import atomic_path, write_text

MODES = ("align", "box")
WRITTEN, EXISTS, FALLBACK = "written", "exists", "fallback"
# Failure reasons, as they appear in the failures CSV.
EMPTY_FILE, UNREADABLE, NO_FACE, FACE_TOO_SMALL = "empty_file", "unreadable", "no_face", "face_too_small"
NO_IDENTITY = "no_identity"  # no identity folder, or the identity pattern does not match
SAME_OUTPUT = "same_output"  # another image (e.g. a.png beside a.jpg) already maps to this crop
NO_IMAGES = "no_image_files"  # an identity folder without any image file


@dataclass(frozen=True)
class CropOptions:
    """How each face is cropped: size (height, width), mode 'align' or 'box' (with margin),
    min_face (shorter box side in pixels), pick 'largest', 'confident' or 'center' (detect.pick_face),
    JPEG quality, resume (leave existing crops alone), fallback (insightface's centre crop when no
    face is found) and max_side (the longest side faces are detected on, faces/photo.py)."""

    size: tuple = (112, 112)
    mode: str = "align"
    margin: float = 0.2
    min_face: int = 20
    pick: str = "largest"
    quality: int = 95
    resume: bool = False
    fallback: bool = False
    max_side: int = photo.MAX_DETECT_SIDE

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.pick not in detect.PICK_MODES:
            raise ValueError(f"pick {self.pick!r}: expected one of {', '.join(detect.PICK_MODES)}")
        if self.max_side < 48:
            raise ValueError(f"max_side {self.max_side}: expected at least 48 pixels (MTCNN's last stage sees 48x48)")


class Crop(NamedTuple):
    """One photo's crop: image (None when there is none), reason ("" when a face was cropped, else
    why not: NO_FACE, FACE_TOO_SMALL, UNREADABLE; with a fallback crop in image) and faces found."""

    image: object
    reason: str
    faces: int


def read_rgb(path):
    """Decode an image file into RGB uint8; None when OpenCV cannot read it."""
    return photo.decode(np.fromfile(str(path), np.uint8))


def jpeg_bytes(image_rgb, quality=95, where="image"):
    """An RGB image encoded as JPEG, as crops are stored."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"{where}: JPEG encoding failed")
    return encoded.tobytes()


def write_rgb(path, image_rgb, quality=95):
    """Write an RGB image as JPEG, atomically."""
    data = jpeg_bytes(image_rgb, quality, path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def crop_face(image_rgb, options):
    """The chosen face's crop of an RGB photo, or a failure reason (NO_FACE, FACE_TOO_SMALL); with
    options.fallback the centre crop instead of a reason.

    Faces down to 20 pixels (or min_face if smaller) of the detection copy are searched for, so that
    a face below min_face is reported as too small rather than missing; the pick is made among the
    faces big enough.
    """
    copy, factors = photo.shrink(image_rgb, options.max_side)
    crop = _crop(copy, factors, lambda scale: (image_rgb, 1), options)
    return crop.reason if crop.image is None else crop.image


def crop_photo(data, options):
    """The Crop of a photo's encoded bytes, decoding no more of a large JPEG than detection and the
    crop need (faces/photo.py)."""
    copy, factors, full = photo.detection_copy(data, options.max_side)
    if copy is None:
        return Crop(None, UNREADABLE, 0)
    source = (lambda scale: (full, 1)) if full is not None else (lambda scale: photo.warp_source(data, scale))
    return _crop(copy, factors, source, options)


def _crop(copy, factors, source, options):
    """Detect on `copy` (reduced from the photo by `factors`), pick, and crop from source(scale) →
    (image, reduction): the photo at 1/reduction, enough for a crop of `scale` crop pixels per photo pixel."""
    found = detect.detect(copy, min_size=min(options.min_face, 20))
    faces = [photo.face_in_photo(face, factors) for face in found]
    shape = (copy.shape[0] * factors[1], copy.shape[1] * factors[0])
    face = detect.pick_face([face for face in faces if face.size >= options.min_face], options.pick, shape)
    if face is None:
        reason = FACE_TOO_SMALL if faces else NO_FACE
        if not options.fallback:
            return Crop(None, reason, len(faces))
        image, reduction = source(max(options.size) / min(shape))
        return Crop(align.center_crop(image, options.size, align.CENTER_MARGIN / reduction), reason, len(faces))
    if options.mode == "align":
        image, reduction = source(align.transform_scale(face.landmarks, options.size))
        landmarks = photo.from_photo(face.landmarks, reduction)
        return Crop(align.align_face(image, landmarks, options.size), "", len(faces))
    image, reduction = source(max(options.size) / (face.size * (1 + 2 * options.margin)))
    box = (*photo.from_photo([face.box[:2]], reduction)[0], face.box[2] / reduction, face.box[3] / reduction)
    return Crop(align.crop_box(image, box, options.margin, options.size), "", len(faces))


class Result(NamedTuple):
    """What became of one photo: status (WRITTEN, FALLBACK, EXISTS or a failure reason), faces found
    (-1 when not looked at) and, for FALLBACK, why no face was cropped."""

    status: str
    faces: int = -1
    reason: str = ""


def process_image(src, dst, options):
    """Crop one image file into `dst`; returns its Result."""
    src, dst = Path(src), Path(dst)
    if options.resume and dst.exists():
        return Result(EXISTS)
    if src.stat().st_size == 0:
        return Result(EMPTY_FILE, 0)
    crop = crop_photo(src.read_bytes(), options)
    if crop.image is None:
        return Result(crop.reason, crop.faces)
    write_rgb(dst, crop.image, options.quality)
    return Result(FALLBACK, crop.faces, crop.reason) if crop.reason else Result(WRITTEN, crop.faces)


def list_images(root):
    """Relative POSIX paths of all images under `root`, any depth, sorted; ValueError when there are none."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: input is not a directory")
    images = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if is_image_file(p))
    if not images:
        raise ValueError(f"{root}: no image files found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def identity_of(relative_path, pattern=None):
    """The identity of an image: its first folder, or the one group of `pattern` searched in the path."""
    if pattern is None:
        parts = relative_path.split("/")
        return parts[0] if len(parts) > 1 else None
    match = re.search(pattern, relative_path)
    return match.group(1) if match else None


def output_path(relative_path, identity):
    """`<identity>/...` for the crop: the input's relative path if it starts with the identity folder,
    else the relative path under an identity folder (as it is for identity ""); always with a .jpg suffix."""
    if identity and not relative_path.startswith(identity + "/"):
        relative_path = f"{identity}/{relative_path}"
    path = Path(relative_path)
    return path if path.suffix.lower() in (".jpg", ".jpeg") else path.with_suffix(".jpg")


def _process_job(job):
    src, dst, options = job
    try:
        return process_image(src, dst, options)
    except (cv2.error, OSError):
        return Result(UNREADABLE)


def preprocess(
    in_dir, out_dir, options=CropOptions(), workers=1, identity_pattern=None, failures_path=None, progress=True,
    flat=False,
):
    """Crop every image of `in_dir` into `out_dir`; returns a report dict.

    With `flat`, crops keep the images' relative paths and no identities are looked for (a folder of
    photos for verification). The report holds counts (images found, written, fallback = centre crops
    by reason, exists = skipped by resume, failed by reason, several_faces = photos with more than
    one face), identities (found, with at least one crop, identity folders without images) and the
    failures CSV path (columns path, reason, fallback; paths relative to `in_dir`; fallbacks and empty
    identity folders included), written beside `out_dir` unless `failures_path` is given. A folder of
    photos with no identity folders at all is a ValueError saying to use `flat`.
    """
    if identity_pattern is not None and re.compile(identity_pattern).groups != 1:
        raise ValueError(f"identity pattern {identity_pattern!r}: expected exactly one group, e.g. '^([^/]+)/'")
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    failures_path = Path(failures_path) if failures_path else out_dir.parent / f"{out_dir.name}_failures.csv"
    images = list_images(in_dir)
    identities = ["" if flat else identity_of(relative, identity_pattern) for relative in images]
    if not flat and identity_pattern is None and not any(identities):
        raise ValueError(f"{in_dir}: its images lie directly in it, not in identity folders {in_dir}/<identity>/; "
                         "add --flat to crop them into a flat folder, or give each person a folder")
    empty = [] if flat or identity_pattern else empty_identity_folders(in_dir, identities)
    jobs, failures = crop_jobs(in_dir, out_dir, images, identities, options)
    failures += [(f"{name}/", NO_IMAGES) for name in empty]
    results = run_jobs([job for _, _, job in jobs], workers, progress)
    counts = collections.Counter(result.status for result in results)
    with_crops, fallbacks = set(), []
    for (relative, identity, _), result in zip(jobs, results):
        if result.status in (WRITTEN, EXISTS, FALLBACK):
            with_crops.add(identity)
        if result.status == FALLBACK:
            fallbacks.append((relative, result.reason))
        elif result.status not in (WRITTEN, EXISTS):
            failures.append((relative, result.status))
    write_failures(failures_path, failures, fallbacks)
    return {
        "images": len(images),
        "written": counts[WRITTEN],
        "fallback": dict(sorted(collections.Counter(reason for _, reason in fallbacks).items())),
        "exists": counts[EXISTS],
        "failed": dict(sorted(collections.Counter(reason for path, reason in failures if reason != NO_IMAGES).items())),
        "several_faces": sum(result.faces > 1 for result in results),
        "identities": len({identity for _, identity, _ in jobs if identity}),
        "identities_with_crops": len(with_crops - {""}),
        "empty_identities": empty,
        "failures_csv": str(failures_path),
    }


def empty_identity_folders(in_dir, identities):
    """Names of the folders of `in_dir` (identity folders) holding no image file at any depth."""
    return sorted({p.name for p in Path(in_dir).iterdir() if p.is_dir()} - set(identities))


def crop_jobs(in_dir, out_dir, images, identities, options):
    """([(relative path, identity, job)], [(relative path, reason)]): one job per image with an identity
    and an output of its own; the others are failures."""
    failures, jobs, outputs = [], [], set()
    for relative, identity in zip(images, identities):
        dst = None if identity is None else out_dir / output_path(relative, identity)
        if identity is None:
            failures.append((relative, NO_IDENTITY))
        elif dst in outputs:
            failures.append((relative, SAME_OUTPUT))
        else:
            outputs.add(dst)
            jobs.append((relative, identity, (str(in_dir / relative), str(dst), options)))
    return jobs, failures


def write_failures(path, failures, fallbacks=()):
    """The failures CSV (path, reason, fallback), sorted, written atomically: photos without a crop,
    and photos given the centre crop (fallback 'center_crop')."""
    rows = [(path, reason, "") for path, reason in failures] + [(path, reason, "center_crop") for path, reason in fallbacks]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "reason", "fallback"])
    writer.writerows(sorted(rows))
    write_text(path, buffer.getvalue())


def run_jobs(jobs, workers, progress):
    """Results of `jobs` (src, dst, options) in order; worker processes (spawned: TensorFlow does not survive fork) when workers > 1."""
    bar = dict(total=len(jobs), disable=not progress, unit="img", smoothing=0.05)
    if workers <= 1 or len(jobs) <= 1:
        return [_process_job(job) for job in tqdm(jobs, **bar)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(jobs))) as pool:
        return list(tqdm(pool.imap(_process_job, jobs, chunksize=4), **bar))


def format_report(report):
    """Counts as printed at the end of a run."""
    failed = ", ".join(f"{reason} {n}" for reason, n in report["failed"].items()) or "none"
    fallback = "".join(f", {n} centre crops ({reason})" for reason, n in report["fallback"].items())
    identities = f"{report['identities_with_crops']}/{report['identities']} identities have crops; "
    empty = len(report["empty_identities"])
    empty = f"{empty} identity folder{'s' * (empty != 1)} without images ({', '.join(report['empty_identities'][:3])}"
    empty += ", ...); " if len(report["empty_identities"]) > 3 else "); "
    return (
        f"{report['images']} images: {report['written']} written{fallback}, {report['exists']} skipped (existing), "
        f"{sum(report['failed'].values())} failed ({failed}), {report['several_faces']} with several faces; "
        f"{identities if report['identities'] else ''}{empty if report['empty_identities'] else ''}"
        f"failures listed in {report['failures_csv']}"
    )
