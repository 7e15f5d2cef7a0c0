"""`run(experiment)`: train an experiment in named steps, resuming its run directory.

    validate → strategy → hold the run directory → compare the settings → data plan →
    (finished: the stored result) → model → restore → run files → callbacks → fit → finish

A run is a function of its config: the data order is fixed by (train.seed, epoch), a checkpoint
holds the model, the optimizer and the data position, and the last step is always saved. A killed
run rerun with the same command ends as the uninterrupted one would have; SIGTERM or SIGINT
checkpoint the step reached and stop (stop.py). One process holds a run directory (run_dir.py).

A rerun's settings are compared with those the directory was trained with before anything is
written (run_settings.py): the same → resume, or a finished run prints its stored result and
changes nothing; only train.epochs raised → train on; anything else is refused naming each key,
unless allowed (`allow_changes`, tools/run.py --allow-changes), which records the change in the
run's history.jsonl. Free to differ are the keys that change neither the trained weights nor the
reported numbers: name, log.*, data.cache_dir, eval.batch_size, train.save_steps and
train.strategy (the replica count, which sets the global batch, is compared). Nothing is written
until the model is built and the checkpoint restored.
"""
import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
import uuid
import warnings
from pathlib import Path

import keras
import numpy as np

from arcface_keras import config as config_lib
from arcface_keras.data import prepare
from arcface_keras.io import write_json, write_text
from arcface_keras.training import auto, distribute, run_dir, run_settings, stop, watch
from arcface_keras.training import callbacks as cb
from arcface_keras.training.distribute import is_chief, make_strategy, strategy_scope
from arcface_keras.training.model import build_face_model
from arcface_keras.training.optimizers import make_optimizer
from arcface_keras.training.schedules import WarmupSchedule, scaled_lr


def run(experiment, command=None, allow_changes=False):
    """Train `experiment`, resuming from its run directory if one exists; return the final evaluation.

    Raises RunError (one line) for a rerun refused (other settings, the directory in use) or a
    write that failed, and stop.Stopped on SIGTERM/SIGINT (the step reached is checkpointed).
    `allow_changes`: continue a run with other settings, recording them in its history.jsonl.
    The global dtype policy is `train.precision` (`auto` resolved) during the run and what it was
    before afterwards.
    """
    config_lib.validate(experiment)
    prepare.check_val_bins(experiment.data.val)
    distribute.connect_processes(experiment.train.strategy, experiment.train.seed)  # JAX: before it starts
    backend = keras.backend.backend()
    choice = auto.resolve(experiment.train.precision, experiment.train.jit_compile, backend, auto.local_device(backend))
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(choice.precision)
    try:
        return train_and_evaluate(experiment, run_dir.command_line(command), choice, allow_changes)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def train_and_evaluate(experiment, command, choice, allow_changes):
    """Hold the run directory (the chief) and train in it; a full disk is one line, a signal a Stopped."""
    work_dir = Path(experiment.log.work_dir) / experiment.name
    keras.utils.set_random_seed(experiment.train.seed)
    strategy = make_strategy(experiment.train.strategy, experiment.train.model_parallel, experiment.model.head)
    choice = auto.across_replicas(choice, experiment.train.jit_compile, keras.backend.backend(),
                                  distribute.num_replicas(strategy))
    held = run_dir.RunLock(work_dir, command) if is_chief(strategy) else contextlib.nullcontext()
    with stop.SignalStop() as stopper, held:
        try:
            return train_in(experiment, work_dir, command, choice, strategy, stopper, allow_changes)
        except stop.Stopped as stopped:
            stopped.step = newest_step(work_dir) if stopped.step is None else stopped.step
            raise
        except OSError as exc:
            failure = run_dir.write_failure(exc, work_dir, newest_step(work_dir))
            if failure is None:
                raise
            raise failure from None


def train_in(experiment, work_dir, command, choice, strategy, stopper, allow_changes):
    """The run's named steps, its directory held: settings compared, data, stored result or model,
    run files written (the chief), fit, finish."""
    resolved = {"precision": choice.precision, "jit_compile": choice.jit_compile,
                "replicas": distribute.num_replicas(strategy)}
    changes = run_settings.check_rerun(work_dir, experiment.to_dict(), resolved, allow_changes)
    plan = plan_training(experiment, strategy)
    resume = cb.latest_checkpoint(work_dir / "checkpoints")
    stored = None if changes else finished_result(work_dir, plan, resume)
    if stored is not None:
        print(f"[arcface_keras] {experiment.name}: finished at step {stored['step']}; stored result "
              f"from {work_dir / 'eval_report.json'} (raise train.epochs to train on)", flush=True)
        return stored
    evaluator = Evaluator(prepare.validation_sets(experiment.data), experiment.eval.batch_size, experiment.eval.flip)
    model, embedder, head = build_model(experiment, plan, strategy, choice.jit_compile)  # model.pretrained checked
    start = restore(model, work_dir, resume)
    chief = is_chief(strategy)
    if chief:  # only now: settings that do not build, or a checkpoint that does not fit, leave the run as it was
        run_dir.remove_stale_temp_files(work_dir)
        write_run_files(experiment, work_dir, command, choice, plan.replicas)
        run_settings.record(work_dir, changes, command)
    evaluator.attach(embedder, plan.replicas)
    run_wandb = start_wandb(experiment, work_dir) if chief else None
    callbacks = make_callbacks(experiment, plan, work_dir, evaluator, start, chief, stopper)
    result = train(model, plan, start, callbacks, choice)
    if stopper.signum is not None:  # came while the last step was being saved: skip the final evaluation
        raise stop.Stopped(stopper.signum, newest_step(work_dir))
    if plan.workers > 1:
        task_type, index = distribute.task(strategy)
        print(f"[arcface_keras] {task_type} {index}: trained weights sha1 {distribute.weights_fingerprint(embedder)}",
              flush=True)
    if chief:
        finish(experiment, work_dir, embedder, evaluator, result, run_wandb)
    return result


def train(model, plan, start, callbacks, choice):
    """Say what is trained, fit from the start position; the result so far (steps, batches, seconds)."""
    t = plan.experiment.train
    print(f"[arcface_keras] {plan.experiment.name}: {plan.num_images} images, {plan.num_classes} classes, "
          f"{plan.replicas} replica(s), global batch {plan.global_batch}, {plan.steps_per_epoch} steps/epoch × "
          f"{t.epochs} epochs, {choice.describe()}" + (f", resuming at step {start.step}" if start.batches else ""),
          flush=True)
    began = time.time()
    with distribute.synchronized_batch_norm(model, t.sync_bn and plan.replicas > 1), \
            distribute.distributed_fit(model, plan.strategy, plan.dataset(0).element_spec):
        fit_from(model, plan, start.batches, callbacks)
    if not np.isfinite(model_loss(model)):
        raise FloatingPointError(f"{plan.experiment.name}: training stopped on a non-finite loss")
    return {"step": cb.global_step(model), "batches": plan.total_steps, "train_seconds": round(time.time() - began, 1)}


def newest_step(work_dir):
    """The step of the run's newest checkpoint, None without one."""
    return (cb.latest_checkpoint(Path(work_dir) / "checkpoints") or {}).get("step")


def restore(model, work_dir, resume):
    """StepCheckpoint.restore, with a checkpoint that does not fit the model said in one line (and not
    after the warnings Keras gives on the way)."""
    with warnings.catch_warnings(record=True) as caught:
        try:
            start = cb.StepCheckpoint.restore(model, work_dir / "checkpoints", resume)
        except ValueError as exc:
            raise run_dir.RunError(f"{work_dir / 'checkpoints' / resume['path']} does not fit the model these "
                                   f"settings build ({str(exc).strip().splitlines()[0]}): train them under a new "
                                   "name (--set name=...)") from None
    for warning in caught:
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return start


@dataclasses.dataclass
class TrainingPlan:
    """What the data decides: the TFRecord folder, sizes, steps, and the stream from any batch on."""

    experiment: config_lib.Experiment
    folder: Path
    num_images: int
    num_classes: int
    num_shards: int
    replicas: int
    workers: int
    strategy: object

    @property
    def global_batch(self):
        return self.experiment.train.batch_size * self.replicas

    @property
    def steps_per_epoch(self):
        return self.experiment.train.steps_per_epoch or max(self.num_images // self.global_batch, 1)

    @property
    def total_steps(self):
        return self.steps_per_epoch * self.experiment.train.epochs

    def dataset(self, start):
        """The training batches from batch `start` to the end (data/pipeline.train_dataset)."""
        from arcface_keras.augment import build_augmentation
        from arcface_keras.data.pipeline import train_dataset

        d, t = self.experiment.data, self.experiment.train
        dataset = train_dataset(self.folder, self.global_batch, d.image_size, self.steps_per_epoch, t.epochs,
                                start=start, augment=build_augmentation(d.augment, seed=t.seed),
                                shuffle_buffer=d.shuffle_buffer, seed=t.seed, sampler=d.sampler,
                                images_per_identity=d.images_per_identity)
        if self.workers > 1:
            dataset = distribute.shard_across_workers(dataset, self.strategy, self.num_shards)
        return dataset


def plan_training(experiment, strategy):
    """Prepare the training data (converted and cached once) and size the run."""
    from arcface_keras.data.tfrecord import read_manifest

    folder = prepare.training_folder(experiment.data)
    manifest = read_manifest(folder)
    plan = TrainingPlan(experiment, folder, manifest["num_images"], manifest["num_classes"],
                        len(manifest["shards"]), distribute.num_replicas(strategy), distribute.num_workers(strategy),
                        strategy)
    if plan.global_batch > plan.num_images:
        print(f"[arcface_keras] warning: the global batch of {plan.global_batch} is larger than the "
              f"{plan.num_images} training images: every batch repeats images", file=sys.stderr, flush=True)
    return plan


def finished_result(work_dir, plan, resume):
    """The stored result of a run that trained every step and wrote its report; None otherwise."""
    report = work_dir / "eval_report.json"
    if resume is None or resume["batches"] < plan.total_steps or not report.is_file():
        return None
    stored = json.loads(report.read_text())
    if stored.get("batches", 0) < plan.total_steps:
        return None
    return {k: v for k, v in stored.items() if k not in ("experiment", "sets")}


def write_run_files(experiment, work_dir, command, choice, replicas):
    """config.json (as given: `auto` stays `auto`), command.txt, and versions.json with what `auto` chose
    and the replica count (run_settings compares a rerun's settings with them)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    config_lib.dump(experiment, work_dir / "config.json")
    write_text(work_dir / "command.txt", command + "\n")
    write_json(work_dir / "versions.json", {**versions(), "precision": choice.precision, "jit_compile": choice.jit_compile,
                                            "device": str(choice.device), "replicas": replicas})


def versions():
    import tensorflow as tf

    return {"python": platform.python_version(), "keras": keras.__version__, "tensorflow": tf.__version__,
            "numpy": np.__version__, "backend": keras.backend.backend(), "platform": platform.platform()}


def build_model(experiment, plan, strategy, jit_compile):
    """The compiled training model (optimizer built, so that a checkpoint can load into it), embedder, head."""
    t = experiment.train
    with strategy_scope(strategy):
        model, embedder, head = build_face_model(experiment.model, plan.num_classes, experiment.data.image_size)
        if t.freeze_bn:
            freeze_batch_norms(embedder)
        schedule = WarmupSchedule(
            scaled_lr(t.lr, plan.global_batch, t.lr_batch, t.lr_scaling), plan.total_steps,
            warmup_steps=round(t.warmup_epochs * plan.steps_per_epoch), kind=t.lr_schedule,
            boundaries=[round(e * plan.steps_per_epoch) for e in t.lr_steps],
        )
        model.compile(optimizer=make_optimizer(t, schedule), loss=head.loss(), jit_compile=jit_compile)
        model.optimizer.build(model.trainable_variables)  # now, not inside the first traced step
    return model, embedder, head


def freeze_batch_norms(embedder):
    """Every batch norm of the backbone normalises with its stored statistics and keeps its scale and shift
    (Keras runs a non-trainable BatchNormalization in inference mode). A fine-tune on a few identities
    otherwise replaces statistics gathered over hundreds of thousands of people by those of its own batches."""
    for layer in embedder.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def make_callbacks(experiment, plan, work_dir, evaluator, start, chief, stopper):
    """NaN stop everywhere; on the chief also progress, TensorBoard and W&B (training/watch.py, first, for
    tight step timing), checkpoints, the CSV log and verification; last, the stop on a signal."""
    if not chief:
        return [keras.callbacks.TerminateOnNaN(), stop.StopAfterStep(stopper)]
    cb.truncate_csv(work_dir / "eval_log.csv", start.step)  # rows a killed run logged past its checkpoint
    checkpoint = cb.StepCheckpoint(work_dir / "checkpoints", experiment.train.save_steps, batches=start.batches)
    callbacks = watch.watch(experiment, work_dir, plan.folder, plan.steps_per_epoch, plan.total_steps,
                            plan.global_batch, start.step) + [
        keras.callbacks.TerminateOnNaN(), checkpoint,
        keras.callbacks.CSVLogger(str(work_dir / "train_log.csv"), append=True),
    ]
    if experiment.eval.every_steps:
        callbacks.append(cb.VerificationCallback(
            evaluator, experiment.eval.every_steps, work_dir / "eval_log.csv",
            experiment.eval.best_metric, work_dir / "checkpoints" / "best.weights.h5"))
    return callbacks + [stop.StopAfterStep(stopper, checkpoint)]


def fit_from(model, plan, start, callbacks):
    """`model.fit` from batch `start`: first the rest of a partly done epoch, then whole epochs."""
    steps, epochs = plan.steps_per_epoch, plan.experiment.train.epochs
    epoch, offset = divmod(start, steps)
    if epoch >= epochs:
        return
    if offset:
        model.fit(plan.dataset(start), initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps - offset,
                  callbacks=callbacks, verbose=0, shuffle=False)
        epoch += 1
    if epoch < epochs:
        model.fit(plan.dataset(epoch * steps), initial_epoch=epoch, epochs=epochs, steps_per_epoch=steps,
                  callbacks=callbacks, verbose=0, shuffle=False)


def model_loss(model):
    history = getattr(model, "history", None)
    losses = history.history.get("loss", [0.0]) if history is not None else [0.0]
    return losses[-1] if losses else 0.0


def finish(experiment, work_dir, embedder, evaluator, result, run_wandb):
    """Save the embedder, evaluate it, write eval_report.json; log the final panels and close the W&B run."""
    embedder.save(work_dir / ".embedder.tmp.keras")
    (work_dir / ".embedder.tmp.keras").replace(work_dir / "embedder.keras")
    metrics = evaluator()
    cb.append_csv(work_dir / "eval_log.csv", {"step": result["step"], **metrics})
    cb.log_wandb(metrics, result["step"])
    result.update(metrics)
    write_json(work_dir / "eval_report.json", {"experiment": experiment.name, **result, "sets": evaluator.reports})
    watch.finish(run_wandb, evaluator, work_dir, result)


class Evaluator:
    """Loads the verification sets once; calling it embeds them with the current embedder and scores them."""

    def __init__(self, sets, batch_size, flip):
        from arcface_keras.data.verification import load_verification_set

        self.sets = {}
        for name, path in sets.items():  # an image that does not decode fails here, before anything is written
            try:
                self.sets[name] = load_verification_set(path)
            except (OSError, ValueError) as exc:
                raise config_lib.ConfigError(f"data.val[{name!r}]: {exc}") from None
        self.batch_size = batch_size
        self.flip = flip
        self.embedder = None
        self.source = None  # a model whose weights `embedder` copies before each evaluation
        self.reports = {}
        self.details = {}  # name -> the latest full report, with the ROC and per-pair distances

    def attach(self, embedder, replicas):
        """Evaluate `embedder`. Keras' predict_on_batch under a tf.distribute strategy feeds the whole batch
        to every replica (and, across workers, is a collective the others would not join); on JAX a
        distribution splits it over the devices, which needs a batch they divide: with several replicas
        the chief evaluates a plain copy, outside any distribution."""
        self.embedder = embedder
        if replicas > 1:
            self.embedder, self.source = keras.models.clone_model(embedder), embedder

    def __call__(self):
        from arcface_keras.evaluation.embed import embed_images
        from arcface_keras.evaluation.verification import evaluate

        if self.source is not None:
            self.embedder.set_weights(self.source.get_weights())
        metrics = {}
        for name, (images, issame) in self.sets.items():
            with distribute.outside_distribution():
                embeddings = embed_images(self.embedder, images, batch_size=self.batch_size, flip=self.flip)
            report = evaluate(embeddings[0::2], embeddings[1::2], issame)
            self.details[name] = report
            self.reports[name] = {k: v for k, v in report.items() if not isinstance(v, (list, np.ndarray, dict))}
            for key, value in self.reports[name].items():
                metrics[f"{name}/{key}"] = value
        return metrics


def start_wandb(experiment, work_dir):
    """A W&B run with the full config; offline by default. Reruns of the same directory continue its run."""
    if experiment.log.wandb == "disabled":
        return None
    import wandb

    id_file = work_dir / "wandb_id.txt"
    # A sweep agent names the run it started (WANDB_RUN_ID); otherwise a new id, kept for resuming.
    run_id = id_file.read_text().strip() if id_file.is_file() else os.environ.get("WANDB_RUN_ID") or uuid.uuid4().hex[:8]
    write_text(id_file, run_id + "\n")
    return wandb.init(project=experiment.log.wandb_project, name=experiment.name, id=run_id, resume="allow",
                      config=experiment.to_dict(), dir=str(work_dir), mode=experiment.log.wandb,
                      settings=wandb.Settings(console="off", silent=True))


def format_result(result):
    """One line per verification set: 'name: accuracy ± std (threshold)'."""
    names = sorted({k.split("/")[0] for k in result if "/" in k})
    return "\n".join(
        f"{name}: accuracy {100 * result[f'{name}/accuracy']:.2f}% ± {100 * result[f'{name}/std']:.2f}"
        f"  (threshold {result[f'{name}/threshold']:.2f}, {result.get(f'{name}/num_pairs', '?')} pairs)"
        for name in names
    )
