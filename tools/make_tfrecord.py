"""Convert identity folders, list files and InsightFace .rec files into one sharded TFRecord set.

Sources are merged in the order given; each source's labels are offset by the classes of the
sources before it (MS1M's 85,742 identities then K-Face's 400 → 86,142 classes):

    python tools/make_tfrecord.py --rec faces_emore/train.rec --source kface_aligned --out data/merged
    python tools/make_tfrecord.py --list kface/train.txt --list-root kface/aligned --out data/kface --verify
    python tools/make_tfrecord.py --out data/merged --verify      # check an existing set only
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402


class AppendSource(argparse.Action):
    """Collect --source/--rec/--list into one ordered list of (kind, path)."""

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.sources = [*(namespace.sources or []), (self.const, value)]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", action=AppendSource, const="folder", dest="sources", metavar="DIR",
                        help="identity folder DIR/<identity>/<image> (repeatable)")
    parser.add_argument("--rec", action=AppendSource, const="rec", dest="sources", metavar="FILE",
                        help="InsightFace .rec file, its .idx next to it (repeatable)")
    parser.add_argument("--list", action=AppendSource, const="list", dest="sources", metavar="FILE",
                        help="list file of 'relative_path<TAB>identity' lines, e.g. from select_kface.py (repeatable)")
    parser.add_argument("--list-root", action="append", default=[], metavar="DIR",
                        help="folder the paths of --list are relative to: once for all lists, or once per list "
                             "in order (default: the list file's folder)")
    parser.add_argument("--out", required=True, help="output folder for the shards and manifest.json")
    parser.add_argument("--shards", type=int, default=16, help="number of shards (default 16)")
    parser.add_argument("--workers", type=int, default=2,
                        help="writer threads, each writing its own shards (default 2)")
    parser.add_argument("--reencode-quality", type=int, metavar="Q",
                        help="re-encode every image as JPEG at quality Q (default: keep JPEG/PNG bytes as they are)")
    parser.add_argument("--no-shuffle", action="store_true", help="keep the sources' order instead of shuffling")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default 0)")
    parser.add_argument("--verify", action="store_true",
                        help="re-read every shard afterwards (alone: check --out only)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    args.sources = args.sources or []
    if not args.sources and not args.verify:
        parser.error("give at least one --source, --rec or --list (or --verify to check an existing --out)")
    lists = sum(kind == "list" for kind, _ in args.sources)
    if len(args.list_root) not in (0, 1, lists):
        parser.error(f"--list-root given {len(args.list_root)} times for {lists} --list files: "
                     "give it once or once per list")
    if args.shards < 1 or args.workers < 1:
        parser.error("--shards and --workers must be at least 1")
    if args.reencode_quality is not None and not 1 <= args.reencode_quality <= 100:
        parser.error(f"--reencode-quality {args.reencode_quality}: expected 1..100")
    return args


def open_sources(args):
    from arcface_keras.data import sources

    lists = sum(kind == "list" for kind, _ in args.sources)
    roots = iter(args.list_root * lists if len(args.list_root) == 1 else args.list_root)
    opened = []
    for kind, path in args.sources:
        if kind == "folder":
            opened.append(sources.folder_source(path))
        elif kind == "rec":
            opened.append(sources.rec_source(path))
        else:
            opened.append(sources.list_source(path, next(roots, None)))
    return opened


def main(argv=None):
    args = parse_args(argv)
    from arcface_keras.data import sources, tfrecord

    try:
        if args.sources:
            manifest = sources.convert(open_sources(args), args.out, num_shards=args.shards, workers=args.workers,
                                       reencode_quality=args.reencode_quality, shuffle=not args.no_shuffle,
                                       seed=args.seed, progress=not args.quiet)
            print(f"wrote {manifest['num_images']} images of {manifest['num_classes']} classes "
                  f"in {len(manifest['shards'])} shards to {args.out}")
            for entry in manifest["sources"]:
                print(f"  {entry['name']}: {entry['num_images']} images, {entry['num_classes']} classes, "
                      f"labels from {entry['label_offset']} ({entry['kind']} {entry['path']})")
            report = pathlib.Path(args.out) / "skipped.csv"
            if manifest["skipped"]:
                print(f"skipped {manifest['skipped']} unreadable or empty images: see {report}")
            if manifest["empty_identities"]:
                print(f"skipped {manifest['empty_identities']} identities with no usable image (they get no label): "
                      f"see {report}")
        if args.verify:
            summary = tfrecord.verify(args.out)
            print(f"verified {summary['shards']} shards: {summary['num_images']} images, "
                  f"labels below {summary['num_classes']}")
    except (OSError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise SystemExit(f"make_tfrecord: {message}") from None
    return 0


if __name__ == "__main__":
    main()
