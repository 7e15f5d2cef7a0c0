"""Cost of watching a run on the demo: per logged step (console line, W&B, TensorBoard) and per
verification (the W&B panels), against the demo's own step and verification times.

Trains the demo (experiments/demo_synth_mfn_arc.py) for --steps steps to time its steps and get an
embedder, then times the progress callback's per-step hooks, one logged line (W&B offline run and
TensorBoard open), the verification of the demo's 1,000 pairs and its panels.

    python bench/bench_watch.py [--steps 60] [--json rows.json]
"""
import argparse
import contextlib
import io
import pathlib
import re
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

DEMO = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "demo_synth_mfn_arc.py"


from bench_eval import best_time  # noqa: E402  (bench/ is the script's folder)


def train_demo(work_dir, steps):
    """Train the demo for `steps` steps; return (experiment, median img/s of its lines, run dir)."""
    from arcface_keras.config import load_experiment
    from arcface_keras.training import engine

    experiment = load_experiment(DEMO, [f"train.steps_per_epoch={steps}", "train.epochs=1", "log.every_steps=10",
                                        "log.wandb=disabled", f"log.work_dir={work_dir}"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        engine.run(experiment, command=["bench_watch"])
    speeds = sorted(float(m[1].replace(",", "")) for m in re.finditer(r"  ([\d,]+) img/s", out.getvalue()))
    return experiment, speeds[len(speeds) // 2], pathlib.Path(work_dir) / experiment.name


def progress_costs(experiment, run_dir, every, calls=2000, lines=50):
    """(seconds of the per-step hooks, seconds of one logged line) with W&B offline and TensorBoard on."""
    import keras
    import wandb

    from arcface_keras.training import records
    from arcface_keras.training.progress import Progress

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.optimizer.build(model.trainable_variables)
    progress = Progress(0, 100, 10**6, experiment.train.batch_size, stream=open("/dev/null", "w"), live=False)
    progress.set_model(model)
    progress.on_train_batch_begin(0)
    progress.on_train_batch_end(0, {"loss": 1.0})

    def hooks():
        for batch in range(calls):
            progress.on_train_batch_begin(batch)
            progress.on_train_batch_end(batch, {"loss": 1.0})

    per_step = best_time(hooks) / calls
    run = wandb.init(project="bench_watch", dir=str(run_dir), mode="offline", settings=wandb.Settings(silent=True))
    records.open_records(run_dir, tensorboard=True)
    step = iter(range(1, 10**6))
    per_line = best_time(lambda: [progress.report(next(step) * every, 5, {"loss": 1.0}, time.perf_counter())
                                  for _ in range(lines)]) / lines
    return per_step, per_line, run


def verification_costs(experiment, run_dir):
    """(seconds of one verification of the demo's pairs, seconds of its panels)."""
    import keras

    from arcface_keras.data import prepare
    from arcface_keras.training import engine, panels

    evaluator = engine.Evaluator(prepare.validation_sets(experiment.data), experiment.eval.batch_size,
                                 experiment.eval.flip)
    evaluator.attach(keras.saving.load_model(run_dir / "embedder.keras", compile=False), replicas=1)
    evaluate = best_time(evaluator)
    step = iter(range(10**6, 2 * 10**6))
    return evaluate, best_time(lambda: panels.log_verification(evaluator, next(step)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60, help="demo steps to train and time (default 60)")
    parser.add_argument("--every", type=int, default=10, help="log.every_steps to cost (default 10, the default)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (bench/run_all.py reads it)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        experiment, images_per_second, run_dir = train_demo(tmp, args.steps)
        step_seconds = experiment.train.batch_size / images_per_second
        per_step, per_line, run = progress_costs(experiment, run_dir, args.every)
        evaluate, panel = verification_costs(experiment, run_dir)
        run.finish()
    overhead = (per_step + per_line / args.every) / step_seconds
    rows = [
        {"what": "demo training step", "ms": 1000 * step_seconds},
        {"what": "progress hooks per step", "ms": 1000 * per_step},
        {"what": "one logged line (console, W&B, TensorBoard)", "ms": 1000 * per_line},
        {"what": f"slowdown at log.every_steps={args.every}", "percent": 100 * overhead},
        {"what": "demo verification (1,000 pairs)", "ms": 1000 * evaluate},
        {"what": "its W&B panels", "ms": 1000 * panel},
    ]
    for row in rows:
        value = f"{row['percent']:.2f} %" if "percent" in row else f"{row['ms']:.2f} ms"
        print(f"{row['what']:<48} {value:>12}")
    if args.json:
        from arcface_keras.io import write_json

        write_json(args.json, {"title": "cost of the console line, TensorBoard and W&B panels on the demo",
                               "columns": ["what", "ms", "percent"], "rows": rows})
    return rows


if __name__ == "__main__":
    main()
