"""Generate synthetic face identities as identity folders of 112x112 JPEGs (<out>/id_XXXXX/KKKK.jpg)."""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402

from arcface_keras.data.synthetic import identity_name, write_identities  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", help="output folder (resumes if it already holds some of the images)")
    parser.add_argument("--identities", type=int, default=300, help="number of identities (default 300)")
    parser.add_argument("--images", type=int, default=40, help="images per identity (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--first-identity", type=int, default=0,
                        help="index of the first identity: use N for a held-out set after a training set of N")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    try:
        out = write_identities(args.out, args.identities, args.images, args.seed, args.first_identity, args.workers)
    except ValueError as error:
        parser.exit(2, f"make_synthetic.py: error: {error}\n")
    seconds = time.perf_counter() - start
    total = args.identities * args.images
    last = args.first_identity + args.identities - 1
    print(f"{out}: {identity_name(args.first_identity)}..{identity_name(last)}, {total} images, seed {args.seed},"
          f" in {seconds:.1f} s ({total / max(seconds, 1e-9):.0f} images/s)")
    return out


if __name__ == "__main__":
    main()
