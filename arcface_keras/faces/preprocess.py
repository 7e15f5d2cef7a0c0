"""Batch face cropping: detect, keep one face, align (or box-crop), write identity folders of crops.

Every image under an input tree is processed into `<out>/<identity>/...` (the input's relative path
when the identity is its first folder). Bad images are skipped and listed in a failures CSV with a
reason; outputs are written atomically, so a stopped run can be resumed.
"""
import collections
import csv
import io
import multiprocessing
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from arcface_keras.data.folders import IMAGE_SUFFIXES, is_image_file
from arcface_keras.faces import align, detect
from arcface_keras.io import atomic_path, write_text

MODES = ("align", "box")
WRITTEN, EXISTS = "written", "exists"
# Failure reasons, as they appear in the failures CSV.
EMPTY_FILE, UNREADABLE, NO_FACE, FACE_TOO_SMALL = "empty_file", "unreadable", "no_face", "face_too_small"
NO_IDENTITY = "no_identity"  # no identity folder, or the identity pattern does not match
SAME_OUTPUT = "same_output"  # another image (e.g. a.png beside a.jpg) already maps to this crop


@dataclass(frozen=True)
class CropOptions:
    """How each face is cropped: size (height, width), mode 'align' or 'box' (with margin),
    min_face (shorter box side in pixels), pick 'largest' or 'confident', JPEG quality, and resume
    (leave existing crops alone)."""

    size: tuple = (112, 112)
    mode: str = "align"
    margin: float = 0.2
    min_face: int = 20
    pick: str = "largest"
    quality: int = 95
    resume: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.pick not in detect.PICK_MODES:
            raise ValueError(f"pick {self.pick!r}: expected one of {', '.join(detect.PICK_MODES)}")


def read_rgb(path):
    """Decode an image file into RGB uint8; None when OpenCV cannot read it."""
    data = np.fromfile(str(path), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


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
    """The chosen face's crop, or a failure reason (NO_FACE, FACE_TOO_SMALL).

    Faces down to 20 pixels (or min_face if smaller) are searched for, so that a face below min_face
    is reported as too small rather than missing; the pick is made among the faces big enough.
    """
    faces = detect.detect(image_rgb, min_size=min(options.min_face, 20))
    if not faces:
        return NO_FACE
    big_enough = [face for face in faces if face.size >= options.min_face]
    if not big_enough:
        return FACE_TOO_SMALL
    face = detect.pick_face(big_enough, options.pick)
    if options.mode == "align":
        return align.align_face(image_rgb, face.landmarks, options.size)
    return align.crop_box(image_rgb, face.box, options.margin, options.size)


def process_image(src, dst, options):
    """Crop one image file into `dst`. Returns WRITTEN, EXISTS or a failure reason."""
    src, dst = Path(src), Path(dst)
    if options.resume and dst.exists():
        return EXISTS
    if src.stat().st_size == 0:
        return EMPTY_FILE
    image = read_rgb(src)
    if image is None:
        return UNREADABLE
    crop = crop_face(image, options)
    if isinstance(crop, str):
        return crop
    write_rgb(dst, crop, options.quality)
    return WRITTEN


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
        return UNREADABLE


def preprocess(
    in_dir, out_dir, options=CropOptions(), workers=1, identity_pattern=None, failures_path=None, progress=True,
    flat=False,
):
    """Crop every image of `in_dir` into `out_dir`; returns a report dict.

    With `flat`, crops keep the images' relative paths and no identities are looked for (a folder of
    photos for verification). The report holds counts (images found, written, exists = skipped by
    resume, failed by reason), identities (found, with at least one crop) and the failures CSV path
    (columns path, reason; paths relative to `in_dir`), written beside `out_dir` unless `failures_path`
    is given. A folder of photos with no identity folders at all is a ValueError saying to use `flat`.
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
    jobs, failures = crop_jobs(in_dir, out_dir, images, identities, options)
    statuses = _run([job for _, _, job in jobs], workers, progress)
    counts = collections.Counter(statuses)
    with_crops = set()
    for (relative, identity, _), status in zip(jobs, statuses):
        if status in (WRITTEN, EXISTS):
            with_crops.add(identity)
        else:
            failures.append((relative, status))
    write_failures(failures_path, failures)
    return {
        "images": len(images),
        "written": counts[WRITTEN],
        "exists": counts[EXISTS],
        "failed": dict(sorted(collections.Counter(reason for _, reason in failures).items())),
        "identities": len({identity for _, identity, _ in jobs if identity}),
        "identities_with_crops": len(with_crops - {""}),
        "failures_csv": str(failures_path),
    }


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


def write_failures(path, failures):
    """The failures CSV (path, reason), sorted, written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "reason"])
    writer.writerows(sorted(failures))
    write_text(path, buffer.getvalue())


def _run(jobs, workers, progress):
    """Statuses of `jobs` in order; worker processes (spawned: TensorFlow does not survive fork) when workers > 1."""
    bar = dict(total=len(jobs), disable=not progress, unit="img", smoothing=0.05)
    if workers <= 1 or len(jobs) <= 1:
        return [_process_job(job) for job in tqdm(jobs, **bar)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(jobs))) as pool:
        return list(tqdm(pool.imap(_process_job, jobs, chunksize=4), **bar))


def format_report(report):
    """Counts as printed at the end of a run."""
    failed = ", ".join(f"{reason} {n}" for reason, n in report["failed"].items()) or "none"
    identities = f"{report['identities_with_crops']}/{report['identities']} identities have crops; "
    return (
        f"{report['images']} images: {report['written']} written, {report['exists']} skipped (existing), "
        f"{sum(report['failed'].values())} failed ({failed}); {identities if report['identities'] else ''}"
        f"failures listed in {report['failures_csv']}"
    )
