"""LFW verification from the raw photos: detect, align, embed and score the 6,000 pairs of pairs.txt.

    python tools/lfw.py lfw-deepfunneled/ --pairs pairs.txt --model embedder.keras --out work_dirs/lfw --workers 2

Only the photos pairs.txt names are processed. When a photo holds several faces the one nearest its
centre, weighted by size, is kept (--pick); a photo without a usable face gets insightface's centre
crop, counted and listed, so every pair is scored. Each stage prints its counts and time; the crops
(<out>/crops/, <out>/crops.json) are reused by a rerun with the same crop options, and the report
(<out>/lfw_report.json) and ROC (<out>/lfw_roc.png) are written at the end. docs/lfw.md walks through it.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402

from arcface_keras.faces.detect import PICK_MODES  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", type=pathlib.Path, help="the LFW photos: RAW/<Name>/<Name>_<nnnn>.jpg")
    parser.add_argument("--pairs", type=pathlib.Path, required=True, help="LFW's pairs.txt (header '10 300')")
    parser.add_argument("--model", type=pathlib.Path, required=True, help=".keras embedder: images in [-1, 1] → embeddings")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="folder for crops, report and ROC")
    parser.add_argument("--pick", choices=PICK_MODES, default="center", help="which face when a photo holds several")
    parser.add_argument("--min-face", type=int, default=20, help="smallest face to use (pixels); smaller: centre crop")
    parser.add_argument("--workers", type=int, default=1, help="cropping processes, each with its own detector")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="do not add the mirrored crop's embedding")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while cropping")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from arcface_keras.evaluation import lfw
    from arcface_keras.faces.preprocess import CropOptions
    from tools.eval import load_embedder

    for path, what in ((args.raw, "folder of LFW photos"), (args.pairs, "pairs.txt"), (args.model, "model")):
        if not path.exists():
            sys.exit(f"error: {path}: no such {what}")
    try:
        embedder = load_embedder(args.model)
    except (OSError, ValueError, TypeError) as error:
        sys.exit(f"error: {args.model}: cannot load the embedder ({error})")
    try:
        options = CropOptions(pick=args.pick, min_face=args.min_face, fallback=True)
        report = lfw.run_lfw(args.raw, args.pairs, embedder, args.out, options, workers=args.workers, flip=args.flip,
                             batch_size=args.batch_size, progress=not args.no_progress)
    except (OSError, ValueError) as error:
        sys.exit(f"error: {error}")
    print(f"report: {args.out / 'lfw_report.json'}, ROC: {args.out / 'lfw_roc.png'}")
    return report


if __name__ == "__main__":
    main()
