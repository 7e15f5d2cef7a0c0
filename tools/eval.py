"""Evaluate an embedder on verification sets (insightface 10-fold protocol): table, JSON report, ROC plot.

    python tools/eval.py --model embedder.keras --bin lfw.bin --bin cfp_fp.bin --pairs DIR/pairs.txt \\
        --folder FACES --out report.json

Missing inputs and a .bin that is not a plain pickle of images are refused before the model loads; a
set whose images do not all decode (or are cut short) is skipped and reported, and the run exits 1.
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from arcface_keras.data.verification import (  # noqa: E402
    PAIRS_TXT,
    load_bin,
    load_generated_pairs,
    load_pairs,
    load_verification_set,
    read_bin,
)
from arcface_keras.evaluation.verification import FARS  # noqa: E402
from arcface_keras.io import unwritable, write_json  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, required=True, help=".keras embedder: images in [-1, 1] → embeddings")
    parser.add_argument("--bin", dest="sets", action="append", type=lambda p: ("bin", pathlib.Path(p)), default=[],
                        metavar="FILE", help="insightface verification .bin (repeatable)")
    parser.add_argument("--pairs", dest="sets", action="append", type=lambda p: ("pairs", pathlib.Path(p)),
                        metavar="PAIRS_TXT", help="LFW-style pairs.txt; images under --root or its directory (repeatable)")
    parser.add_argument("--folder", dest="sets", action="append", type=lambda p: ("folder", pathlib.Path(p)),
                        metavar="DIR", help=f"identity folder: its {PAIRS_TXT}, else pairs generated from it (repeatable)")
    parser.add_argument("--root", type=pathlib.Path, help="image folder for --pairs files (default: each file's directory)")
    parser.add_argument("--folder-pairs", type=int, default=6000, help="pairs to generate for a --folder without pairs.txt")
    parser.add_argument("--seed", type=int, default=0, help="seed of generated pairs")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="JSON report; the ROC plot goes beside it (_roc.png)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="do not add the mirrored image's embedding")
    args = parser.parse_args(argv)
    if not args.sets:
        parser.error("give at least one set: --bin, --pairs or --folder")
    return args


def set_name(kind, path):
    if kind == "bin" or (kind == "pairs" and path.name != PAIRS_TXT):
        return path.stem
    return path.parent.name if kind == "pairs" else path.name


def check_inputs(args):
    """The model file and every set exist, and each .bin unpickles (by the reader that runs none of its
    code), before the model is loaded; SystemExit with one line otherwise."""
    problems = [] if args.model.is_file() else [f"{args.model}: no such model file"]
    problems += [f"--out {problem}" for problem in [unwritable(args.out)] if problem]
    if args.root is not None and not args.root.is_dir():
        problems.append(f"--root {args.root}: no such folder")
    for kind, path in args.sets:
        if kind == "bin":
            try:
                read_bin(path)
            except (OSError, ValueError) as exc:
                problems.append(str(exc))
        elif kind == "pairs" and not path.is_file():
            problems.append(f"{path}: no such pairs file")
        elif kind == "folder" and not path.is_dir():
            problems.append(f"{path}: no such folder")
    if problems:
        sys.exit(f"error: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))


def load_set(kind, path, args):
    if kind == "bin":
        return load_bin(path)
    if kind == "pairs":
        return load_pairs(path, args.root)
    if (path / PAIRS_TXT).is_file():
        return load_verification_set(path)
    return load_generated_pairs(path, num_pairs=args.folder_pairs, seed=args.seed)


def load_embedder(path):
    import keras

    import arcface_keras.heads  # noqa: F401

    return keras.saving.load_model(path, compile=False)


def format_table(results):
    fars = [f"tar@far={name}" for name in FARS]
    header = ["set", "pairs", "accuracy ± std", "threshold", *[f"TAR@{name}" for name in FARS], "AUC", "EER"]
    rows = [header]
    for name, r in results.items():
        if "error" in r:
            rows.append([name, "-", "skipped", *["-"] * (len(header) - 3)])
            continue
        rows.append([
            name, str(r["num_pairs"]), f"{r['accuracy']:.5f} ± {r['std']:.5f}", f"{r['threshold']:.3f}",
            *[f"{r[key]:.5f}" if key in r else "-" for key in fars], f"{r['auc']:.5f}", f"{r['eer']:.5f}",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def main(argv=None):
    args = parse_args(argv)
    check_inputs(args)
    from arcface_keras.evaluation.embed import embed_images
    from arcface_keras.evaluation.plots import plot_roc
    from arcface_keras.evaluation.verification import evaluate

    try:
        embedder = load_embedder(args.model)
    except (OSError, ValueError, TypeError) as exc:
        sys.exit(f"error: {args.model}: cannot load the embedder ({exc})")
    results, curves = {}, {}
    for kind, path in args.sets:
        name = set_name(kind, path)
        if name in results:  # two sets with one name: number the later one
            name = f"{name}_{len(results) + 1}"
        try:
            images, issame = load_set(kind, path, args)
        except (OSError, ValueError) as exc:  # a broken set is reported, the others still run
            print(f"skipped {name}: {exc}", file=sys.stderr)
            results[name] = {"source": str(path), "error": str(exc)}
            continue
        embeddings = embed_images(embedder, images, batch_size=args.batch_size, flip=args.flip)
        report = evaluate(embeddings[0::2], embeddings[1::2], issame)
        roc = report.pop("roc")
        del report["distances"]
        curves[name] = (roc["fpr"], roc["tpr"])
        results[name] = {"source": str(path), **report}
    print(format_table(results))
    report = {"model": str(args.model), "flip": args.flip, "batch_size": args.batch_size, "sets": results}
    write_json(args.out, report)
    if curves:
        plot_roc(curves, args.out.with_name(f"{args.out.stem}_roc.png"), title=f"ROC of {args.model.name}")
    if len(curves) < len(results):
        sys.exit(1)
    return report


if __name__ == "__main__":
    main()
