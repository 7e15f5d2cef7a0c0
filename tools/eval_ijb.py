"""IJB-B / IJB-C evaluation of an embedder: 1:1 TAR at FAR 1e-6..1e-1, 1:N rank-k and TPIR at FPIR.

    python tools/eval_ijb.py data/IJBC --model embedder.keras --out work_dirs/ijbc/report.json
    python tools/eval_ijb.py data/IJBC --model embedder.keras --out r.json --features work_dirs/ijbc/features.npz \\
        --normalize-images --no-detector-score     # re-score other pooling choices without re-embedding

The folder holds insightface's layout (loose_crop/ and meta/; see arcface_keras/data/ijb.py). Writes
the JSON report, the ROC plot beside it (_roc.png) and, with --wandb, a W&B run. The options used
are printed and written in the report. Unreadable crops (missing, cut short, undecodable) are skipped
and counted. TAR@FAR is reported twice: insightface's read-out (nearest vertex of sklearn's ROC, what
published tables quote) and the conservative one (largest TAR with FAR <= the target); see docs/ijb.md.
"""
import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from arcface_keras.evaluation.ijb import IDENTIFICATION  # noqa: E402
from arcface_keras.io import atomic_path, unwritable, write_json  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=pathlib.Path, help="IJB folder with loose_crop/ and meta/")
    parser.add_argument("--model", type=pathlib.Path, required=True, help=".keras embedder")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="JSON report; the ROC plot goes beside it")
    parser.add_argument("--target", choices=("ijbc", "ijbb"), help="default: found from meta/")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="embed the image only, not its mirror too")
    parser.add_argument("--no-detector-score", dest="detector_score", action="store_false",
                        help="do not weight images by their detector score")
    parser.add_argument("--normalize-images", action="store_true", help="L2-normalise image features before pooling")
    parser.add_argument("--features", type=pathlib.Path,
                        help="image features: read if the file exists (an .npz this tool wrote, or a plain .npy "
                             "array (images, D) in the order of meta/<t>_face_tid_mid.txt, all-zero rows counting "
                             "as unreadable), else embedded and written there as .npz")
    parser.add_argument("--features-dtype", choices=("float16", "float32"), default="float16",
                        help="dtype of embedded features (features read from a file keep theirs)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=4, help="threads reading and aligning crops")
    parser.add_argument("--wandb", choices=("online", "offline", "disabled"), default="disabled")
    parser.add_argument("--wandb-project", default="arcface_keras")
    args = parser.parse_args(argv)
    new_features = args.features if args.features and not args.features.is_file() else None
    for option, path in (("--out", args.out), ("--features", new_features)):
        problem = path and unwritable(path)
        if problem:
            parser.error(f"{option} {problem}")  # before hours of embedding, not after
    if args.features and not args.features.exists() and args.features.suffix != ".npz":
        parser.error(f"--features {args.features}: no such file; features are written as .npz: give a .npz name")
    return args


def options(args, features, flip):
    return {"flip": flip, "detector_score": args.detector_score, "normalize_images": args.normalize_images,
            "features_dtype": str(features.dtype), "alignment": "5-point similarity to the ArcFace template"}


def read_features(path, count, flip):
    """(features, readable, flip) from --features: an .npz this tool wrote, or a plain (count, D) .npy array
    (flip unknown: None). ValueError naming the file when it holds anything else."""
    try:
        saved = np.load(path)  # allow_pickle=False: never runs code
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a .npy/.npz of features ({error})") from None
    if isinstance(saved, np.ndarray):
        features, readable, saved_flip = saved, np.any(saved != 0, axis=tuple(range(1, saved.ndim))), None
    else:
        with saved:
            missing = sorted({"features", "readable", "flip"} - set(saved.files))
            if missing:
                raise ValueError(f"{path}: an .npz without {', '.join(missing)}; expected one written by this tool")
            features, readable, saved_flip = saved["features"], saved["readable"], bool(saved["flip"])
    if features.ndim != 2 or features.dtype.kind != "f" or len(features) != count or len(readable) != count:
        raise ValueError(f"{path}: holds a {features.dtype} array of shape {features.shape}; this protocol needs "
                         f"(images, D) floats with {count} rows, one per image of meta/*_face_tid_mid.txt")
    if saved_flip is not None and saved_flip != flip:
        raise ValueError(f"{path}: features embedded with flip={saved_flip}, this run asks for flip={flip}")
    return features, readable, saved_flip


def image_features(args, protocol):
    """(features, readable mask, flip, seconds per 1,000 images; None when read from --features)."""
    if args.features and args.features.is_file():
        return *read_features(args.features, len(protocol.names), args.flip), None
    from arcface_keras.evaluation.ijb import embed_protocol
    from tools.eval import load_embedder

    embedder = load_embedder(args.model)
    begin = time.perf_counter()
    features, readable = embed_protocol(embedder, protocol, args.batch_size, args.flip,
                                        np.dtype(args.features_dtype), args.workers)
    per_thousand = (time.perf_counter() - begin) / len(features) * 1000
    if args.features:
        with atomic_path(args.features) as tmp, open(tmp, "wb") as f:
            np.savez(f, features=features, readable=readable, flip=args.flip)
    return features, readable, args.flip, per_thousand


def format_report(report):
    lines = [f"{report['target'].upper()}  " + "  ".join(f"{k}={v}" for k, v in report["options"].items()),
             f"images {report['images']} (unreadable {report['unreadable_images']}), templates {report['templates']}, "
             f"pairs {report['pairs']} ({report['genuine']} genuine)"]
    fars = list(report["tar_at_far_insightface"])
    lines.append("1:1  " + "TAR@FAR (%)".ljust(12) + "".join(f"{far:>8}" for far in fars))
    for name in ("insightface", "conservative"):
        table = report[f"tar_at_far_{name}"]
        lines.append("     " + name.ljust(12) + "".join(f"{100 * table[far]:8.2f}" for far in fars))
    for gallery, result in report.get(IDENTIFICATION, {}).items():
        figures = "  ".join(f"{k}: {'-' if v is None else f'{100 * v:.2f}'}" for k, v in result.items()
                            if k not in ("mated", "non_mated"))
        lines.append(f"1:N open-set per gallery, {gallery}  {figures}")
    if report.get("seconds_per_1000_images") is not None:
        lines.append(f"align + embed: {report['seconds_per_1000_images']:.1f} s per 1,000 images")
    lines.append("pool/score: " + ", ".join(f"{k} {v:.2f}" for k, v in report["timings"].items()))
    return "\n".join(lines)


def log_wandb(args, report, roc_path):
    import wandb

    run = wandb.init(project=args.wandb_project, mode=args.wandb, job_type="eval_ijb",
                     config={"model": str(args.model), "target": report["target"], **report["options"]})
    target = report["target"]
    summary = {f"{target}/tar@far={far}/{name}": tar for name in ("insightface", "conservative")
               for far, tar in report[f"tar_at_far_{name}"].items()}
    for gallery, result in report.get(IDENTIFICATION, {}).items():
        summary.update({f"{target}/open_set/{gallery}/{k}": v for k, v in result.items() if v is not None})
    run.log({**summary, f"{report['target']}/roc": wandb.Image(str(roc_path))})
    run.finish()


def main(argv=None):
    args = parse_args(argv)
    from arcface_keras.data.ijb import load_ijb
    from arcface_keras.evaluation.ijb import score_protocol
    from arcface_keras.evaluation.plots import plot_roc

    if not (args.features and args.features.is_file()) and not args.model.is_file():
        sys.exit(f"error: {args.model}: no such model file")
    try:
        protocol = load_ijb(args.root, args.target)
        features, readable, flip, per_thousand = image_features(args, protocol)
    except (OSError, ValueError) as exc:
        sys.exit(f"error: {exc}")
    if not readable.any():
        sys.exit(f"error: {args.root / 'loose_crop'}: no crop could be read")
    scored, (fpr, tpr), _, _ = score_protocol(protocol, features, readable, args.normalize_images, args.detector_score)
    report = {"target": protocol.target, "model": str(args.model), "options": options(args, features, flip),
              "images": len(features), "unreadable_images": int((~readable).sum()),
              "seconds_per_1000_images": per_thousand, **scored}
    print(format_report(report))
    write_json(args.out, report)
    roc_path = args.out.with_name(f"{args.out.stem}_roc.png")
    plot_roc({protocol.target.upper(): (fpr, tpr)}, roc_path, title=f"{protocol.target.upper()} 1:1, {args.model.name}")
    if args.wandb != "disabled":
        log_wandb(args, report, roc_path)
    return report


if __name__ == "__main__":
    main()
