"""Are two photos the same person? Detect, align, embed (with flip) and compare by cosine similarity.

    python tools/verify.py me.jpg you.jpg --model work_dirs/run/embedder.keras

The threshold is --threshold (cosine), else the one in the model's evaluation report beside it
(eval_report.json or report.json; its squared-L2 threshold d becomes cosine 1 - d/2, preferring
the LFW set when several are listed), else 0.3 (cosine; squared-L2 1.4, typical of ArcFace models on LFW).
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

from arcface_keras.faces import align, detect  # noqa: E402
from arcface_keras.faces.preprocess import read_rgb  # noqa: E402

DEFAULT_THRESHOLD = 0.3
REPORT_NAMES = ("eval_report.json", "report.json")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo1")
    parser.add_argument("photo2")
    parser.add_argument("--model", required=True, help="embedder .keras: (B,112,112,3) in [-1,1] -> (B,D)")
    parser.add_argument("--threshold", type=float, help="cosine similarity at or above which the photos are 'same'")
    parser.add_argument("--min-face", type=int, default=20, help="smallest face to consider (pixels)")
    parser.add_argument("--no-flip", action="store_true", help="embed without the mirrored image")
    return parser.parse_args(argv)


def aligned_face(path, size, min_face):
    """The largest face of a photo, aligned to the template; exits with a one-line error when there is none."""
    image = read_rgb(path)
    if image is None:
        raise SystemExit(f"{path}: not a readable image")
    faces = [face for face in detect.detect(image, min_size=min(min_face, 20)) if face.size >= min_face]
    if not faces:
        raise SystemExit(f"{path}: no face of at least {min_face} pixels found")
    return align.align_face(image, detect.pick_face(faces, "largest").landmarks, size)


def _thresholds(data, prefix=""):
    """(name, value) of every numeric 'threshold' or '<set>/threshold' entry in a JSON report, in order."""
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}{key}"
            if (key == "threshold" or key.endswith("/threshold")) and isinstance(value, (int, float)):
                yield name, float(value)
            else:
                yield from _thresholds(value, name + ".")


def report_threshold(model_path):
    """(cosine threshold, where it came from) from a report beside the model, or None."""
    for report_name in REPORT_NAMES:
        path = pathlib.Path(model_path).parent / report_name
        if path.is_file():
            found = list(_thresholds(json.loads(path.read_text())))
            if found:
                name, distance = next((item for item in found if "lfw" in item[0].lower()), found[0])
                return 1.0 - distance / 2.0, f"{path} ({name}: squared-L2 {distance:.3f})"
    return None


def main(argv=None):
    args = parse_args(argv)
    import keras

    import arcface_keras.backbones  # noqa: F401  (registers the backbone layers for loading)
    from arcface_keras.evaluation.embed import embed_images

    embedder = keras.saving.load_model(args.model, compile=False)
    size = tuple(embedder.input_shape[1:3])
    size = (112, 112) if None in size else size
    faces = np.stack([aligned_face(path, size, args.min_face) for path in (args.photo1, args.photo2)])
    embeddings = embed_images(embedder, faces, batch_size=2, flip=not args.no_flip)
    similarity = float(np.dot(embeddings[0], embeddings[1]))

    if args.threshold is not None:
        threshold, source = args.threshold, "--threshold"
    else:
        threshold, source = report_threshold(args.model) or (DEFAULT_THRESHOLD, "default")
    same = similarity >= threshold
    print(f"cosine similarity {similarity:.4f}, threshold {threshold:.4f} ({source}): {'same' if same else 'different'}")
    return {"similarity": similarity, "threshold": threshold, "source": source, "same": same}


if __name__ == "__main__":
    main()
