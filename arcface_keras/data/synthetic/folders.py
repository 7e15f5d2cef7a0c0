"""Synthetic identities on disk: identity folders written resumably, and a cache keyed by their parameters."""
import concurrent.futures
import json
import logging
import multiprocessing
from pathlib import Path

import cv2

from arcface_keras.data.integrity import UnreadableImage, read_bgr_file
from arcface_keras.data.synthetic.render import render_identity_image, single_threaded_cv2
from arcface_keras.data.synthetic.traits import GENERATOR_VERSION, SIZE, check_index
from arcface_keras.io import atomic_path, write_json

MANIFEST = "synthetic.json"
JPEG_QUALITY = 95
GENERATOR = "arcface_keras.data.synthetic"  # recorded in the manifest, which keys cached folders
_LOG = logging.getLogger(__name__)


def identity_name(identity):
    return f"id_{identity:05d}"


def _image_path(out_dir, identity, image):
    return Path(out_dir) / identity_name(identity) / f"{image:04d}.jpg"


def _is_valid_image(path):
    try:
        return read_bgr_file(path).shape == (SIZE, SIZE, 3)
    except (OSError, UnreadableImage):  # missing, cut short or undecodable: written again
        return False


def _write_identity(out_dir, seed, identity, images_per_identity):
    """Write the missing or unreadable images of one identity; return how many were written."""
    written = 0
    for image in range(images_per_identity):
        path = _image_path(out_dir, identity, image)
        if _is_valid_image(path):
            continue
        rgb = render_identity_image(seed, identity, image)
        ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"{path}: JPEG encoding failed")
        with atomic_path(path) as tmp:
            tmp.write_bytes(jpeg.tobytes())
        written += 1
    return written


def _manifest(identities, images_per_identity, seed, first_identity):
    return {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "first_identity": first_identity,
        "identities": identities,
        "images_per_identity": images_per_identity,
        "image_size": SIZE,
        "layout": "id_<identity, 5 digits>/<image, 4 digits>.jpg",
    }


def _read_manifest(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_identities(out_dir, identities, images_per_identity, seed=0, first_identity=0, workers=1):
    """Write identities first_identity.. as `<out_dir>/id_XXXXX/KKKK.jpg`; return out_dir.

    Existing valid images are kept, so an interrupted run resumes. `synthetic.json`, written last,
    marks the folder complete; a folder made with another seed or generator version is refused.
    """
    out_dir = Path(out_dir)
    identities = check_index("identities", identities, 1)
    images_per_identity = check_index("images_per_identity", images_per_identity, 1)
    seed, first_identity = check_index("seed", seed), check_index("first_identity", first_identity)
    workers = check_index("workers", workers, 1)
    manifest_path = out_dir / MANIFEST
    old = _read_manifest(manifest_path)
    if old is not None and (old.get("seed"), old.get("version")) != (seed, GENERATOR_VERSION):
        raise ValueError(f"{manifest_path}: holds seed {old.get('seed')} of generator version {old.get('version')},"
                         f" not seed {seed} of version {GENERATOR_VERSION}; use another folder")
    manifest_path.unlink(missing_ok=True)  # complete again only once every image is there
    ids = range(first_identity, first_identity + identities)
    jobs = ([out_dir] * len(ids), [seed] * len(ids), ids, [images_per_identity] * len(ids))
    if workers == 1:
        with single_threaded_cv2():
            written = sum(map(_write_identity, *jobs))
    else:
        context = multiprocessing.get_context("spawn")  # the caller may hold TensorFlow threads: no fork
        with concurrent.futures.ProcessPoolExecutor(workers, context, initializer=cv2.setNumThreads,
                                                    initargs=(1,)) as pool:
            written = sum(pool.map(_write_identity, *jobs, chunksize=max(1, len(ids) // (8 * workers))))
    write_json(manifest_path, _manifest(identities, images_per_identity, seed, first_identity))
    total = identities * images_per_identity
    _LOG.info("%s: wrote %d images, kept %d existing (%d identities x %d images)",
              out_dir, written, total - written, identities, images_per_identity)
    return out_dir


def ensure_synthetic(cache_dir, identities, images_per_identity, seed, first_identity=0, workers=1):
    """A complete synthetic folder under `cache_dir` keyed by the parameters, generated if absent or incomplete."""
    folder = Path(cache_dir).expanduser() / (
        f"synthetic_v{GENERATOR_VERSION}_seed{seed}_id{first_identity}-{first_identity + identities - 1}"
        f"_x{images_per_identity}")
    if _read_manifest(folder / MANIFEST) == _manifest(identities, images_per_identity, seed, first_identity):
        return folder
    return write_identities(folder, identities, images_per_identity, seed, first_identity, workers)
