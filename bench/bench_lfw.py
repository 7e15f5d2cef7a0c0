"""LFW from the raw photos with the published MobileFaceNet (insightface buffalo_s, w600k_mbf.onnx), as a
user runs it: the ONNX file imported by tools/import_weights.py, then tools/lfw.py on the photos.

    python bench/bench_lfw.py [--raw DIR] [--pairs FILE] [--onnx FILE] [--work DIR] [--workers 2] [--quick]

The material is looked for under the data root ($ARCFACE_DATA, default data/ in the repository, as
the experiments do): lfw/lfw-deepfunneled/<Name>/<Name>_<nnnn>.jpg, lfw/pairs.txt and
models/buffalo_s/w600k_mbf.onnx.

Prints accuracy ± std over the 10 folds, TAR@FAR, the counts and the time of each stage. The photos,
pairs.txt and model are not part of the project (see docs/lfw.md for where to get them); when one is
missing the benchmark says so and is skipped. --work keeps the imported model and the crops between
runs (a rerun reuses the crops); by default they go to a temporary folder. --quick scores the first
fold only (600 pairs). bench/lfw_factors.py measures where the points between this figure and the
published one go.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(os.environ.get("ARCFACE_DATA") or ROOT / "data").expanduser()
PUBLISHED = 99.70  # insightface model zoo, buffalo_s recogniser (w600k_mbf) on LFW


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=pathlib.Path, default=DATA / "lfw/lfw-deepfunneled", help="LFW photos")
    parser.add_argument("--pairs", type=pathlib.Path, default=DATA / "lfw/pairs.txt", help="LFW pairs.txt")
    parser.add_argument("--onnx", type=pathlib.Path, default=DATA / "models/buffalo_s/w600k_mbf.onnx",
                        help="insightface's w600k_mbf.onnx (buffalo_s)")
    parser.add_argument("--work", type=pathlib.Path, help="keep the imported model and the crops here")
    parser.add_argument("--workers", type=int, default=2, help="cropping processes")
    parser.add_argument("--quick", action="store_true", help="the first fold only (600 pairs)")
    return parser.parse_args(argv)


def missing_material(args):
    for path, what in ((args.raw, "LFW photos"), (args.pairs, "pairs.txt"), (args.onnx, "w600k_mbf.onnx")):
        if not path.exists():
            return f"{what} not found at {path}"
    return None


def first_fold(pairs_txt, out):
    """pairs.txt of the first fold (300 same + 300 different pairs) under a one-fold header."""
    lines = [line for line in pathlib.Path(pairs_txt).read_text().splitlines() if line.strip()][1:601]
    out.write_text("1\t300\n" + "\n".join(lines) + "\n")
    return out


def run(command, title):
    """Run a tool as a user would; its output is echoed; returns seconds."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, *map(str, command)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    print("\n".join(f"    {line}" for line in lines))
    if done.returncode:
        sys.exit(f"{title} failed (exit {done.returncode}): {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return time.perf_counter() - began


def stage_rate(stage, seconds, counts):
    if stage == "crops" and counts["reused"]:
        return f" ({counts['reused']:,} crops reused from an earlier run)"
    return f" ({counts['photos'] / seconds:.1f} photos/s)" if stage in ("crops", "embed") and seconds else ""


def table(report, seconds_import):
    result, counts, seconds = report["result"], report["counts"], report["seconds"]
    fars = [key for key in ("tar@far=1e-3", "tar@far=1e-4") if key in result]
    rows = [
        ("accuracy (10-fold, flip)", f"{100 * result['accuracy']:.2f}% ± {100 * result['std']:.2f} "
                                     f"(published {PUBLISHED:.2f}%)"),
        *[(f"TAR@FAR={key.split('=')[1]}", f"{result[key]:.4f}") for key in fars],
        ("pairs scored", f"{counts['pairs_scored']:,} ({counts['same']:,} same)"),
        ("photos", f"{counts['photos']:,}: {counts['aligned']:,} aligned ({counts['several_faces']:,} with several "
                   f"faces), {sum(counts['center_crop'].values())} centre crops"),
        ("import w600k_mbf.onnx", f"{seconds_import:.0f} s"),
        *[(f"stage {stage}", f"{value:.1f} s{stage_rate(stage, value, counts)}") for stage, value in seconds.items()],
    ]
    return "\n".join(["| | |", "|---|---|", *[f"| {name} | {value} |" for name, value in rows]])


def main(argv=None):
    args = parse_args(argv)
    reason = missing_material(args)
    if reason:
        print(f"LFW benchmark skipped: {reason} (docs/lfw.md says where to get the photos, pairs.txt and model)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or pathlib.Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model, pairs = work / "w600k_mbf.keras", args.pairs
        if args.quick:
            pairs = first_fold(args.pairs, work / "pairs_fold1.txt")
        print(f"LFW from the raw photos ({args.raw}), {'first fold' if args.quick else 'all 6,000 pairs'}, "
              f"{os.cpu_count()} CPUs")
        seconds_import = 0.0
        if not model.is_file():
            seconds_import = run(["tools/import_weights.py", args.onnx, "--out", model], "import")
        out = work / ("lfw_quick" if args.quick else "lfw")
        run(["tools/lfw.py", args.raw, "--pairs", pairs, "--model", model, "--out", out, "--workers", args.workers,
             "--no-progress"], "tools/lfw.py")
        report = json.loads((out / "lfw_report.json").read_text())
    print()
    print(table(report, seconds_import))
    return report


if __name__ == "__main__":
    main()
