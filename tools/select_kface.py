"""Select K-Face images by accessory, lighting, expression and camera; split each person into train/test.

    python tools/select_kface.py /data/kface --out kface_sel --lighting L1-L3 --accessory S001,S002,S005 \\
        --expression E01-E03 --camera C5-C10 --train 132 --test 30 --copy

Writes OUT/train.txt and OUT/test.txt (relative_path<TAB>person), OUT/counts.csv (per person) and
OUT/below_count.csv (persons with fewer images than train + test); with --copy also identity folders
OUT/train/<person>/S001_L1_E01_C7.jpg and OUT/test/<person>/... for tools/preprocess.py.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402

from arcface_keras.data import kface  # noqa: E402
from arcface_keras.io import write_json  # noqa: E402

EXAMPLES = {
    "person": "19062421,19062431",
    "accessory": "S001,S002,S005",
    "lighting": "L1-L3",
    "expression": "E01-E03",
    "camera": "C5-C10",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="K-Face root holding one folder per person")
    parser.add_argument("--out", required=True, help="output directory for the lists (and copies)")
    parser.add_argument("--layout", default=kface.DEFAULT_LAYOUT, help="path pattern under ROOT (default: %(default)s)")
    for field, example in EXAMPLES.items():
        parser.add_argument(f"--{field}", help=f"{field} values: names and ranges, e.g. {example} (default: all)")
    parser.add_argument("--test", type=int, help="test images per person")
    parser.add_argument("--train", type=int, help="train images per person (default: the rest)")
    parser.add_argument("--test-ratio", type=float, help="instead of counts: this fraction of each person to test")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default: %(default)s)")
    parser.add_argument("--drop-short", action="store_true", help="leave out persons below train + test images")
    parser.add_argument("--copy", action="store_true", help="also copy into OUT/train/<person>/ and OUT/test/<person>/")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while copying")
    args = parser.parse_args(argv)
    if (args.test is None) == (args.test_ratio is None):
        parser.error("give either --test (and optionally --train) or --test-ratio")
    if args.train is not None and args.test is None:
        parser.error("--train needs --test")
    return args


def main(argv=None):
    args = parse_args(argv)
    selection = {field: getattr(args, field) for field in kface.FIELDS if getattr(args, field)}
    images = kface.scan(args.root, args.layout, selection)
    if not images:
        raise SystemExit(f"{args.root}: no images match layout {args.layout!r} and the selection {selection}")
    train, test, counts = kface.split(images, args.train, args.test, args.test_ratio, args.seed, args.drop_short)
    needed = None if args.test is None else args.test + (args.train or 0)
    if not train and not test:
        raise SystemExit(f"{args.root}: every person has fewer than {needed} selected images and --drop-short "
                         "left them all out; nothing written")
    paths = kface.write_split(args.out, train, test, counts, needed)
    write_json(pathlib.Path(args.out) / "selection.json", vars(args))
    if args.copy:
        kface.copy_split(args.root, args.out, train, test, progress=not args.no_progress)

    selected = [c["selected"] for c in counts.values()]
    short = [person for person, c in counts.items() if c["short"]]
    print(
        f"{len(images)} images selected from {len(counts)} persons ({min(selected)}-{max(selected)} per person); "
        f"train {len(train)}, test {len(test)}; per-person counts in {paths['counts']}"
    )
    if short:
        listed = ", ".join(f"{p} ({counts[p]['selected']})" for p in short[:10]) + (" ..." if len(short) > 10 else "")
        action = "left out" if args.drop_short else "kept with fewer images"
        print(f"{len(short)} persons below {needed} images ({action}): {listed}; all in {paths['below_count']}")
    return {"train": train, "test": test, "counts": counts, "paths": paths}


if __name__ == "__main__":
    main()
