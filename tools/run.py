"""Train one experiment: python tools/run.py experiments/X.py [--set section.key=value ...].

On several machines, start the same command on each, adding
--workers host0:port,host1:port,... --worker-index i (worker 0 is the chief, which writes the run).
A W&B sweep agent's `--section.key=value` arguments are taken as --set overrides (experiments/sweeps/).
"""
import argparse
import importlib.util
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from arcface_keras import sweep  # noqa: E402
from arcface_keras.config import ConfigError, load_experiment  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("experiment", help="an experiment file defining `experiment`")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a setting, e.g. --set train.epochs=1 --set model.head.m=0.4")
    parser.add_argument("--wandb", choices=["online", "offline", "disabled"], help="W&B mode (default: the experiment's log.wandb)")
    parser.add_argument("--work-dir", help="parent of the run directory (default: the experiment's log.work_dir)")
    parser.add_argument("--check", action="store_true", help="validate and print the resolved experiment, then exit")
    parser.add_argument("--workers", help="multi-worker training: every worker's host:port, comma-separated, the "
                                          "same list on every machine (writes TF_CONFIG; train.strategy=multi_worker)")
    parser.add_argument("--worker-index", type=int, help="this machine's position in --workers (0: the chief)")
    return parser.parse_known_args(argv)


def main(argv=None):
    args, extra = parse_args(argv)
    overrides = list(args.overrides)
    if args.wandb:
        overrides.append(f"log.wandb={args.wandb}")
    if args.work_dir:
        overrides.append(f"log.work_dir={args.work_dir}")
    if importlib.util.find_spec("tensorflow") is None:
        sys.exit("error: training reads its data with tf.data, and TensorFlow is not installed: "
                 "pip install -e '.[cpu]' (or '.[gpu]' on a GPU machine)")
    if (args.workers is None) != (args.worker_index is None):
        sys.exit("error: --workers and --worker-index go together")
    try:
        if args.workers is not None:
            from arcface_keras.training.distribute import tf_config

            os.environ["TF_CONFIG"] = tf_config(args.workers.split(","), args.worker_index)
            overrides.append("train.strategy=multi_worker")
        experiment = load_experiment(args.experiment, overrides + sweep.overrides_from_args(extra))
        experiment.name = sweep.agent_run_name(experiment.name, os.environ)
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        sys.exit(f"error: {exc.args[0] if exc.args else exc}")
    if args.check:  # what engine.run checks before any work, then the resolved settings
        import json

        from arcface_keras.data.prepare import check_val_bins

        try:
            check_val_bins(experiment.data.val)
        except ConfigError as exc:
            sys.exit(f"error: {exc.args[0]}")
        print(json.dumps(experiment.to_dict(), indent=2))
        return None
    from arcface_keras.training import engine

    command = [sys.executable, *sys.argv] if argv is None else ["tools/run.py", *argv]
    try:  # settings only the data or the model can refute (one identity in data.train, model.pretrained not the
        result = engine.run(experiment, command=command)  # same network) fail as they would have at load
    except ConfigError as exc:
        sys.exit(f"error: {exc.args[0]}")
    print(engine.format_result(result))
    return result


if __name__ == "__main__":
    main()
