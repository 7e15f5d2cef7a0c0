"""Train one experiment several times, changing only some settings, and tabulate the verification.

Each variant is a name and the `--set` overrides that make it; every run gets its own directory
(`<experiment name>_<variant>`) and the same seed, data and budget. `--heads` adds the standard
head variants (scale 32 for every margin head; triplet batches are P identities × 4 images):

    python tools/compare.py experiments/demo_synth_mfn_arc.py --heads --set train.epochs=4
    python tools/compare.py experiments/demo_synth_mfn_arc.py \\
        --variant m03 model.head.m=0.3 --variant m05 model.head.m=0.5

The table (Markdown) is printed and written with the per-run results to <work_dir>/compare.{md,json}.
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from arcface_keras.config import ConfigError, load_experiment  # noqa: E402
from arcface_keras.io import write_json, write_text  # noqa: E402

HEAD_VARIANTS = {
    "softmax": ["model.head=softmax"],
    "arcface": ["model.head={'type': 'arcface', 's': 32.0, 'm': 0.3}"],
    "cosface": ["model.head={'type': 'cosface', 's': 32.0, 'm': 0.25}"],
    "combined": ["model.head={'type': 'combined', 's': 32.0, 'm1': 1.0, 'm2': 0.2, 'm3': 0.1}"],
    "adaface": ["model.head={'type': 'adaface', 's': 32.0, 'm': 0.3}"],
    "curricularface": ["model.head={'type': 'curricularface', 's': 32.0, 'm': 0.3}"],
    "triplet": ["model.head={'type': 'triplet', 'margin': 0.2}", "data.sampler=pk", "data.images_per_identity=4"],
    "softmax+center": ["model.head={'type': 'center', 'base': 'softmax'}"],
}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="an experiment file defining `experiment`")
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "OVERRIDE"),
                        help="a variant: its name, then its section.key=value overrides")
    parser.add_argument("--heads", action="store_true", help=f"add the head variants: {', '.join(HEAD_VARIANTS)}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="an override for every variant, e.g. --set train.epochs=2")
    parser.add_argument("--work-dir", help="parent of the run directories (default: the experiment's log.work_dir)")
    return parser.parse_args(argv)


def variants_of(args):
    """{name: overrides}, or a one-line error."""
    variants = dict(HEAD_VARIANTS) if args.heads else {}
    for name, *overrides in args.variant:
        variants[name] = overrides
    if not variants:
        raise ConfigError("no variants: give --heads or --variant NAME OVERRIDE ...")
    return variants


def table(rows, set_names):
    """Markdown: one row per variant, accuracy ± std, TAR@FAR=1e-2 and training time per verification set."""
    lines = ["| variant | " + " | ".join(f"{s} accuracy (%) | {s} TAR@FAR=1e-2 (%)" for s in set_names)
             + " | train (s) |", "|---|" + "---:|---:|" * len(set_names) + "---:|"]
    for name, result in rows:
        cells = []
        for s in set_names:
            tar = result.get(f"{s}/tar@far=1e-2")
            cells += [f"{100 * result[f'{s}/accuracy']:.2f} ± {100 * result[f'{s}/std']:.2f}",
                      "" if tar is None else f"{100 * tar:.1f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {result['train_seconds']:.0f} |")
    return "\n".join(lines)


def run_variant(experiment, command):
    """Train one variant (a rerun with other settings in its directory is refused in one line)."""
    import keras

    from arcface_keras.training import engine, run_dir, stop

    keras.backend.clear_session()
    try:
        result = engine.run(experiment, command=command)
    except (ConfigError, run_dir.RunError) as exc:
        sys.exit(f"error: {exc.args[0]}")
    except stop.Stopped as stopped:
        print(stopped, file=sys.stderr, flush=True)
        sys.exit(stopped.exit_code)
    print(engine.format_result(result), flush=True)
    return result


def main(argv=None):
    args = parse_args(argv)
    common = list(args.overrides) + ([f"log.work_dir={args.work_dir}"] if args.work_dir else [])
    try:
        variants = variants_of(args)
        base = load_experiment(args.experiment, common)
        experiments = {name: load_experiment(args.experiment, common + overrides + [f"name={base.name}_{name}"])
                       for name, overrides in variants.items()}
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        sys.exit(f"error: {exc.args[0] if exc.args else exc}")
    rows = []
    for name, experiment in experiments.items():
        print(f"[compare] {name}: {' '.join(variants[name])}", flush=True)
        rows.append((name, run_variant(experiment, ["tools/compare.py", args.experiment, "--variant", name,
                                                    *variants[name]])))
    set_names = sorted({key.split("/")[0] for _, result in rows for key in result if "/" in key})
    markdown = table(rows, set_names)
    out = pathlib.Path(base.log.work_dir)
    write_text(out / "compare.md", markdown + "\n")
    write_json(out / "compare.json", {"experiment": args.experiment, "common": common, "variants": variants,
                                      "results": dict(rows)})
    print(markdown)
    return rows


if __name__ == "__main__":
    main()
