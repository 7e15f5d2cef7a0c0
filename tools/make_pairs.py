"""Generate LFW-style verification pairs (pairs.txt, 10×N header format) over an identity folder."""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from arcface_keras.data.verification import PAIRS_TXT, make_pairs, write_pairs_txt  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("identity_dir", type=pathlib.Path, help="aligned images as <identity_dir>/<identity>/<image>")
    parser.add_argument("--out", type=pathlib.Path, help=f"pairs file to write (default: <identity_dir>/{PAIRS_TXT})")
    parser.add_argument("--pairs", type=int, default=6000, help="total pairs, half same, half different (default 6000)")
    parser.add_argument("--folds", type=int, default=10, help="folds; no identity appears in two folds (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same pairs")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = args.out or args.identity_dir / PAIRS_TXT
    try:
        folds = make_pairs(args.identity_dir, num_pairs=args.pairs, folds=args.folds, seed=args.seed)
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    write_pairs_txt(out, folds)
    print(f"wrote {out}: {args.folds} folds × ({args.pairs // (2 * args.folds)} same + {args.pairs // (2 * args.folds)} different)")
    return out


if __name__ == "__main__":
    main()
