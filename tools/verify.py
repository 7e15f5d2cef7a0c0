"""Are two photos the same person? Detect, align, embed (with flip) and compare by cosine similarity.

    python tools/verify.py me.jpg you.jpg --model work_dirs/run/embedder.keras \\
        --report work_dirs/run/eval_report.json --set lfw
    python tools/verify.py me.jpg you.jpg --model embedder.keras --threshold 0.35

Each photo is cropped exactly as tools/preprocess.py crops (largest face, 5-point alignment, JPEG at
quality 95) and decoded as training and evaluation decode. The threshold is that of one set of an
evaluation report (--report with --set; its squared-L2 threshold d becomes cosine 1 - d/2) or
--threshold (cosine). With neither, the similarity is printed and no verdict is given.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402
import json  # noqa: E402
import zipfile  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from arcface_keras.data.decode import decode_rgb  # noqa: E402
from arcface_keras.data.integrity import UnreadableImage, read_bgr_file  # noqa: E402
from arcface_keras.faces.preprocess import CropOptions, crop_face, jpeg_bytes  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo1")
    parser.add_argument("photo2")
    parser.add_argument("--model", required=True, help="embedder .keras: (B,112,112,3) in [-1,1] -> (B,D)")
    parser.add_argument("--report", type=pathlib.Path,
                        help="evaluation report (eval_report.json of a run, or tools/eval.py --out) to take a threshold from")
    parser.add_argument("--set", dest="set_name", metavar="NAME", help="the verification set of --report, e.g. lfw")
    parser.add_argument("--threshold", type=float, help="cosine similarity at or above which the photos are 'same'")
    parser.add_argument("--min-face", type=int, default=20, help="smallest face to consider (pixels)")
    parser.add_argument("--no-flip", action="store_true", help="embed without the mirrored image")
    args = parser.parse_args(argv)
    if (args.report is None) != (args.set_name is None):
        parser.error("--report and --set go together: the threshold of set NAME in report R")
    if args.report is not None and args.threshold is not None:
        parser.error("give --report/--set or --threshold, not both")
    if args.threshold is not None and not -1.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold {args.threshold}: a cosine similarity lies in [-1, 1]")
    return args


def report_threshold(report_path, set_name):
    """(cosine threshold, where it came from) of set `set_name` in an evaluation report; SystemExit if absent."""
    try:
        sets = json.loads(pathlib.Path(report_path).read_text()).get("sets")
    except (OSError, ValueError, AttributeError) as error:
        raise SystemExit(f"error: {report_path}: not a readable evaluation report ({error})") from None
    if not isinstance(sets, dict) or not sets:
        raise SystemExit(f"error: {report_path}: no 'sets' in this report; expected one written by a run or tools/eval.py")
    if set_name not in sets:
        raise SystemExit(f"error: {report_path}: no set {set_name!r}; it has {', '.join(sorted(sets))}")
    distance = sets[set_name].get("threshold") if isinstance(sets[set_name], dict) else None
    if not isinstance(distance, (int, float)):
        raise SystemExit(f"error: {report_path}: set {set_name!r} has no threshold (was it evaluated?)")
    return 1.0 - distance / 2.0, f"{report_path} {set_name}: squared-L2 {distance:.3f}"


def read_photo(path):
    """The photo at `path` as RGB; SystemExit naming it when it is missing, cut short or undecodable."""
    try:
        return cv2.cvtColor(read_bgr_file(path), cv2.COLOR_BGR2RGB)
    except OSError as error:
        raise SystemExit(f"error: {path}: {error.strerror or error}") from None
    except UnreadableImage as error:
        raise SystemExit(f"error: {path}: not a readable image ({error})") from None


def aligned_face(path, size, min_face, image=None):
    """The largest face of a photo as a training crop: aligned, stored as JPEG, decoded by the one decoder."""
    image = read_photo(path) if image is None else image
    options = CropOptions(size=size, min_face=min_face)
    crop = crop_face(image, options)
    if isinstance(crop, str):
        raise SystemExit(f"error: {path}: {crop.replace('_', ' ')} (faces of at least {min_face} pixels are used)")
    return decode_rgb(jpeg_bytes(crop, options.quality, path), path)


def main(argv=None):
    args = parse_args(argv)
    threshold, source = args.threshold, "--threshold"
    if args.report is not None:
        threshold, source = report_threshold(args.report, args.set_name)
    if not pathlib.Path(args.model).is_file():
        raise SystemExit(f"error: {args.model}: no such model file")
    photos = [read_photo(path) for path in (args.photo1, args.photo2)]  # both read before the model loads
    import keras

    from arcface_keras.evaluation.embed import embed_images

    try:
        embedder = keras.saving.load_model(args.model, compile=False)
    except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as error:
        raise SystemExit(f"error: {args.model}: cannot load the embedder ({error})") from None
    size = tuple(embedder.input_shape[1:3])
    size = (112, 112) if None in size else size
    faces = np.stack([aligned_face(path, size, args.min_face, photo)
                      for path, photo in zip((args.photo1, args.photo2), photos)])
    embeddings = embed_images(embedder, faces, batch_size=2, flip=not args.no_flip)
    similarity = float(np.dot(embeddings[0], embeddings[1]))
    if threshold is None:
        print(f"cosine similarity {similarity:.4f}; no threshold known, so no verdict: "
              "give --report REPORT --set NAME or --threshold")
        return {"similarity": similarity, "threshold": None, "source": None, "same": None}
    same = similarity >= threshold
    print(f"cosine similarity {similarity:.4f}, threshold {threshold:.4f} ({source}): {'same' if same else 'different'}")
    return {"similarity": similarity, "threshold": threshold, "source": source, "same": same}


if __name__ == "__main__":
    main()
