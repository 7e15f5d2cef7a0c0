"""Train one experiment: python tools/run.py experiments/X.py [--set section.key=value ...]."""
import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from arcface_keras.config import ConfigError, load_experiment  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("experiment", help="an experiment file defining `experiment`")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a setting, e.g. --set train.epochs=1 --set model.head.m=0.4")
    parser.add_argument("--wandb", choices=["online", "offline", "disabled"], help="W&B mode (default: the experiment's log.wandb)")
    parser.add_argument("--work-dir", help="parent of the run directory (default: the experiment's log.work_dir)")
    parser.add_argument("--check", action="store_true", help="validate and print the resolved experiment, then exit")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.wandb:
        overrides.append(f"log.wandb={args.wandb}")
    if args.work_dir:
        overrides.append(f"log.work_dir={args.work_dir}")
    try:
        experiment = load_experiment(args.experiment, overrides)
        from arcface_keras.training import engine

        engine.validate(experiment)
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        sys.exit(f"error: {exc.args[0] if exc.args else exc}")
    if args.check:
        import json

        print(json.dumps(experiment.to_dict(), indent=2))
        return None
    result = engine.run(experiment, command=[sys.executable, *sys.argv] if argv is None else ["tools/run.py", *argv])
    print(engine.format_result(result))
    return result


if __name__ == "__main__":
    main()
