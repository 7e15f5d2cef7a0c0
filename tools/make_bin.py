"""Pack an aligned image folder and its pairs.txt into an insightface verification .bin (original encoded bytes)."""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from arcface_keras.data.decode import decode_rgb  # noqa: E402
from arcface_keras.data.verification import pair_paths, parse_pairs_txt, write_bin  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=pathlib.Path, required=True, help="LFW-style pairs.txt")
    parser.add_argument("--root", type=pathlib.Path, help="image folder the pairs refer to (default: the pairs file's directory)")
    parser.add_argument("--out", type=pathlib.Path, required=True, help=".bin file to write")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        paths, issame = pair_paths(parse_pairs_txt(args.pairs), args.root or args.pairs.parent, args.pairs)
        encoded = [path.read_bytes() for path in paths]
        for path, data in zip(paths, encoded):
            decode_rgb(data, path)  # refuse to pack what no reader could decode
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    write_bin(args.out, encoded, issame)
    print(f"wrote {args.out}: {len(issame)} pairs ({int(issame.sum())} same), {len(paths)} images")
    return args.out


if __name__ == "__main__":
    main()
