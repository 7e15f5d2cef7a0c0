"""Detect, align and crop every face photo of an identity-folder tree (MTCNN + 5-point template).

    python tools/preprocess.py raw/ aligned/ --size 112 --workers 2 --resume
    python tools/preprocess.py photos/ photos_aligned/ --flat      # a flat folder of photos, crops flat too

Exits non-zero when no crop exists afterwards.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse

from arcface_keras.faces.align import parse_size  # noqa: E402
from arcface_keras.faces.detect import PICK_MODES  # noqa: E402
from arcface_keras.faces.photo import MAX_DETECT_SIDE  # noqa: E402
from arcface_keras.faces.preprocess import MODES, CropOptions, format_report, preprocess  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="input tree: <input>/<identity>/.../<image> (any depth), or photos with --flat")
    parser.add_argument("output", help="output tree of crops, same relative paths (.jpg)")
    parser.add_argument("--size", type=parse_size, default=(112, 112), help="crop size: 112 or 112x96 (height x width)")
    parser.add_argument("--mode", choices=MODES, default="align", help="align: 5-point template; box: enlarged box")
    parser.add_argument("--margin", type=float, default=0.2, help="box mode: enlargement per side, fraction of the box")
    parser.add_argument("--min-face", type=int, default=20, help="skip faces whose box is shorter than this (pixels)")
    parser.add_argument("--pick", choices=PICK_MODES, default="largest",
                        help="which face when several: largest box, most confident, or center (area minus twice "
                             "the squared distance from the photo's centre: for photos centred on their subject)")
    parser.add_argument("--fallback", action="store_true",
                        help="give a photo without a usable face insightface's centre crop (counted and listed) "
                             "instead of no crop")
    parser.add_argument("--max-side", type=int, default=MAX_DETECT_SIDE,
                        help=f"detect faces on a copy at most this long (default {MAX_DETECT_SIDE}): bounds the work "
                             "per photo; faces below 20 * side / max-side pixels are not found")
    parser.add_argument(
        "--identity-pattern", help="regex with one group giving the identity from the relative path (default: first folder)"
    )
    parser.add_argument("--flat", action="store_true",
                        help="no identities: crop every photo to the same relative path under OUTPUT")
    parser.add_argument("--workers", type=int, default=1, help="worker processes, each with its own detector")
    parser.add_argument("--resume", action="store_true", help="skip images whose crop already exists")
    parser.add_argument("--failures", help="failures CSV (default: <output>_failures.csv beside the output)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.flat and args.identity_pattern:
        parser.error("--flat and --identity-pattern exclude each other: flat crops have no identity")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        options = CropOptions(
            size=args.size, mode=args.mode, margin=args.margin, min_face=args.min_face, pick=args.pick,
            resume=args.resume, fallback=args.fallback, max_side=args.max_side,
        )
        report = preprocess(args.input, args.output, options, workers=args.workers, identity_pattern=args.identity_pattern,
                            failures_path=args.failures, progress=not args.no_progress, flat=args.flat)
    except (OSError, ValueError) as error:
        raise SystemExit(f"preprocess: {error}") from None
    print(format_report(report))
    if report["written"] + report["exists"] == 0:
        raise SystemExit(f"preprocess: no face crop written to {args.output}: see {report['failures_csv']}")
    return report


if __name__ == "__main__":
    main()
