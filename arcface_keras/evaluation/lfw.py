"""LFW from the raw photos: the photos pairs.txt names are detected, aligned, embedded and scored.

Stages (each counted and timed by the caller):
  1. pairs   parse pairs.txt and resolve every image by name (`<Name>/<Name>_<nnnn>.jpg`) under the
             raw folder; a missing photo is an error naming it, before any work.
  2. crops   only those photos: MTCNN, the face nearest the centre weighted by its size when there are
             several (detect.pick_face 'center'), 5-point alignment; a photo where no usable face is
             found gets insightface's centre crop (align.center_crop), counted and listed. Crops are
             stored under `<out>/crops/` as tools/preprocess.py writes them, and `<out>/crops.json`
             records each photo's outcome: a rerun with the same options reuses them.
  3. embed   each distinct crop once, as evaluation/embed.py does (flip summed, L2-normalised).
  4. score   all pairs with the 10-fold protocol (evaluation/verification.py): accuracy, TAR@FAR, ROC.
"""
import collections
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from arcface_keras.data.verification import pair_paths, parse_pairs_txt
from arcface_keras.faces import preprocess
from arcface_keras.io import write_json

CROPS, RECORD = "crops", "crops.json"
DEFAULT_OPTIONS = preprocess.CropOptions(pick="center", fallback=True)


def pair_images(pairs_txt, raw_dir):
    """(pairs, relative paths of the distinct photos they name, sorted); FileNotFoundError naming a missing one."""
    pairs = parse_pairs_txt(pairs_txt)
    paths, _ = pair_paths(pairs, raw_dir, pairs_txt)
    return pairs, sorted({path.relative_to(raw_dir).as_posix() for path in paths})


def load_record(out_dir, options):
    """Outcomes of crops made earlier with the same options (relative path → dict), else {}."""
    path = Path(out_dir) / RECORD
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    return record["photos"] if record.get("options") == _options_key(options) else {}


def _options_key(options):
    return json.loads(json.dumps(asdict(replace(options, resume=False))))


def crop_photos(raw_dir, images, out_dir, options=DEFAULT_OPTIONS, workers=1, progress=True):
    """Crop `images` (relative paths under `raw_dir`) into `<out_dir>/crops/`; returns their outcomes
    (relative path → {"faces": n, "crop": "aligned" | "center_crop", "reason": ...}) and how many were
    reused. A photo that cannot be read has no crop: ValueError listing them."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    record = load_record(out_dir, options)
    todo = [image for image in images if image not in record or not (out_dir / CROPS / image).is_file()]
    identities = [image.split("/")[0] for image in todo]
    jobs, failures = preprocess.crop_jobs(raw_dir, out_dir / CROPS, todo, identities, replace(options, resume=False))
    results = preprocess.run_jobs([job for _, _, job in jobs], workers, progress)
    for (relative, _, _), result in zip(jobs, results):
        if result.status in (preprocess.WRITTEN, preprocess.FALLBACK):
            crop = "aligned" if result.status == preprocess.WRITTEN else "center_crop"
            record[relative] = {"faces": result.faces, "crop": crop, "reason": result.reason}
        else:
            failures.append((relative, result.status))
    write_json(out_dir / RECORD, {"options": _options_key(options), "photos": record})
    if failures:
        listed = ", ".join(f"{path} ({reason})" for path, reason in sorted(failures)[:5])
        raise ValueError(f"{len(failures)} photo(s) could not be cropped, so their pairs cannot be scored: {listed}"
                         f"{', ...' if len(failures) > 5 else ''}")
    return {image: record[image] for image in images}, len(images) - len(todo)


def crop_counts(outcomes):
    """Counts of the crop stage: photos, with one face, several faces, centre crops by reason."""
    faces = [outcome["faces"] for outcome in outcomes.values()]
    fallback = collections.Counter(o["reason"] for o in outcomes.values() if o["crop"] == "center_crop")
    return {"photos": len(outcomes), "aligned": len(outcomes) - sum(fallback.values()),
            "several_faces": sum(n > 1 for n in faces), "center_crop": dict(sorted(fallback.items()))}


def embed_pairs(embedder, pairs, crops_dir, source, batch_size=128, flip=True):
    """(embeddings of the pairs' first images, of their second images, issame), each distinct crop embedded once."""
    from arcface_keras.data.decode import decode_rgb
    from arcface_keras.evaluation.embed import embed_images

    paths, issame = pair_paths(pairs, crops_dir, source)
    distinct = sorted(set(paths))
    index = {path: i for i, path in enumerate(distinct)}
    images = np.stack([decode_rgb(path.read_bytes(), path) for path in distinct])
    embeddings = embed_images(embedder, images, batch_size=batch_size, flip=flip)
    rows = np.array([index[path] for path in paths])
    return embeddings[rows[0::2]], embeddings[rows[1::2]], issame


def run_lfw(raw_dir, pairs_txt, embedder, out_dir, options=DEFAULT_OPTIONS, workers=1, flip=True, batch_size=128,
            progress=True, log=print):
    """All four stages; logs one line per stage (counts and time) and returns the report, also written
    to `<out_dir>/lfw_report.json` (the ROC to `<out_dir>/lfw_roc.png`)."""
    from arcface_keras.evaluation.plots import plot_roc
    from arcface_keras.evaluation.verification import evaluate

    raw_dir, out_dir, seconds = Path(raw_dir), Path(out_dir), {}
    clock = time.perf_counter()
    pairs, images = pair_images(pairs_txt, raw_dir)
    seconds["pairs"], clock = time.perf_counter() - clock, time.perf_counter()
    log(pairs_line(pairs, images, seconds["pairs"]))

    outcomes, reused = crop_photos(raw_dir, images, out_dir, options, workers, progress)
    seconds["crops"], clock = time.perf_counter() - clock, time.perf_counter()
    counts = crop_counts(outcomes)
    log(crops_line(counts, reused, seconds["crops"]))

    first, second, issame = embed_pairs(embedder, pairs, out_dir / CROPS, pairs_txt, batch_size, flip)
    seconds["embed"], clock = time.perf_counter() - clock, time.perf_counter()
    log(f"embed: {len(images)} crops{' and their mirrors' if flip else ''} "
        f"at {len(images) / seconds['embed']:.1f} crops/s [{seconds['embed']:.1f} s]")

    result = evaluate(first, second, issame)
    roc = result.pop("roc")
    del result["distances"]
    plot_roc({"LFW": (roc["fpr"], roc["tpr"])}, out_dir / "lfw_roc.png", title="LFW")
    seconds["score"] = time.perf_counter() - clock
    log(score_line(result, seconds["score"]))
    report = {
        "raw": str(raw_dir), "pairs_txt": str(pairs_txt), "flip": flip, "options": _options_key(options),
        "counts": {"pairs": len(pairs), "same": int(issame.sum()), "images": len(images), "reused": reused,
                   "pairs_scored": result["num_pairs"], **counts},
        "center_crops": sorted(image for image, o in outcomes.items() if o["crop"] == "center_crop"),
        "several_faces": sorted(image for image, o in outcomes.items() if o["faces"] > 1),
        "seconds": {stage: round(value, 2) for stage, value in seconds.items()},
        "result": result,
    }
    write_json(out_dir / "lfw_report.json", report)
    return report


def pairs_line(pairs, images, seconds):
    same = sum(pair.issame for pair in pairs)
    people = len({image.split("/")[0] for image in images})
    return (f"pairs: {len(pairs)} ({same} same, {len(pairs) - same} different) name {len(images)} photos of "
            f"{people} people [{seconds:.1f} s]")


def crops_line(counts, reused, seconds):
    made = counts["photos"] - reused
    fallback = ", ".join(f"{reason} {n}" for reason, n in counts["center_crop"].items())
    rate = f" at {made / seconds:.1f} photos/s" if made and seconds > 0 else ""
    return (f"crops: {counts['photos']} photos, {counts['aligned']} aligned ({counts['several_faces']} with several "
            f"faces: the one nearest the centre kept), {sum(counts['center_crop'].values())} centre crops"
            f"{f' ({fallback})' if fallback else ''}; {made} cropped{rate}, {reused} reused [{seconds:.1f} s]")


def score_line(result, seconds):
    tars = "".join(f"TAR@FAR={key.split('=')[1]} {result[key]:.4f}, " for key in result if key.startswith("tar@far"))
    return (f"score: {result['num_pairs']} pairs: accuracy {100 * result['accuracy']:.2f}% ± {100 * result['std']:.2f} "
            f"(threshold {result['threshold']:.3f}), {tars}AUC {result['auc']:.5f}, EER {result['eer']:.4f} "
            f"[{seconds:.1f} s]")
