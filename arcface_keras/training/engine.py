"""`run(experiment)`: build data, model and optimizer under a strategy, fit, save, evaluate."""
import platform
import sys
import time
import uuid
from pathlib import Path

import keras
import numpy as np

from arcface_keras import config as config_lib
from arcface_keras.data import prepare
from arcface_keras.io import write_json, write_text
from arcface_keras.training import auto, callbacks as cb
from arcface_keras.heads.partial_fc import RowSparseSGD
from arcface_keras.training import distribute
from arcface_keras.training.distribute import is_chief, make_strategy, strategy_scope
from arcface_keras.training.model import build_face_model, check_model_config
from arcface_keras.training.schedules import WarmupSchedule, scaled_lr

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def validate(experiment):
    """Everything that can be checked before any work starts."""
    check_model_config(experiment.model)
    if experiment.train.precision not in PRECISIONS:
        raise config_lib.ConfigError(f"train.precision={experiment.train.precision!r}: expected one of {', '.join(PRECISIONS)}")
    if experiment.train.jit_compile not in (True, False, "auto"):
        raise config_lib.ConfigError(f"train.jit_compile={experiment.train.jit_compile!r}: expected true, false or auto")
    if experiment.train.strategy not in distribute.STRATEGIES:
        raise config_lib.ConfigError(f"train.strategy={experiment.train.strategy!r}: expected one of "
                                     f"{', '.join(distribute.STRATEGIES)}")
    if experiment.train.strategy == "multi_worker" and keras.backend.backend() == "jax":
        raise config_lib.ConfigError("train.strategy='multi_worker' needs the TensorFlow backend; on JAX "
                                     "use auto or mirrored (the local devices)")
    if experiment.train.model_parallel and keras.backend.backend() != "jax":
        raise config_lib.ConfigError(f"train.model_parallel={experiment.train.model_parallel}: needs the JAX backend "
                                     f"(KERAS_BACKEND=jax), running {keras.backend.backend()}")
    if experiment.data.synthetic:
        prepare.synthetic_settings(experiment.data)
    from arcface_keras.augment import build_augmentation

    build_augmentation(experiment.data.augment)


def versions():
    import tensorflow as tf

    return {"python": platform.python_version(), "keras": keras.__version__, "tensorflow": tf.__version__,
            "numpy": np.__version__, "backend": keras.backend.backend(), "platform": platform.platform()}


def run(experiment, command=None):
    """Train `experiment`, resuming from its run directory if one exists; return the final evaluation.

    The global dtype policy is `train.precision` (`auto` resolved) during the run and what it was before afterwards.
    """
    validate(experiment)
    backend = keras.backend.backend()
    choice = auto.resolve(experiment.train.precision, experiment.train.jit_compile, backend, auto.local_device(backend))
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(choice.precision)
    try:
        return train_and_evaluate(experiment, command, choice)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def train_and_evaluate(experiment, command, choice):
    t, d = experiment.train, experiment.data
    work_dir = Path(experiment.log.work_dir) / experiment.name
    keras.utils.set_random_seed(t.seed)
    strategy = make_strategy(t.strategy, t.model_parallel, experiment.model.head)
    chief = is_chief(strategy)
    workers = distribute.num_workers(strategy)
    if chief:
        work_dir.mkdir(parents=True, exist_ok=True)
        config_lib.dump(experiment, work_dir / "config.json")
        write_text(work_dir / "command.txt", " ".join(command or sys.argv) + "\n")
        write_json(work_dir / "versions.json", {**versions(), "precision": choice.precision,
                                                "jit_compile": choice.jit_compile, "device": str(choice.device)})

    from arcface_keras.augment import build_augmentation
    from arcface_keras.data.pipeline import train_dataset
    from arcface_keras.data.tfrecord import read_manifest

    folder = prepare.training_folder(d)
    manifest = read_manifest(folder)
    replicas = distribute.num_replicas(strategy)
    global_batch = t.batch_size * replicas
    steps_per_epoch = t.steps_per_epoch or max(manifest["num_images"] // global_batch, 1)
    total_steps = steps_per_epoch * t.epochs
    dataset = train_dataset(folder, global_batch, d.image_size, build_augmentation(d.augment, seed=t.seed),
                            d.shuffle_buffer, t.seed, d.sampler, d.images_per_identity)
    if workers > 1:
        dataset = distribute.shard_across_workers(dataset, strategy, len(manifest["shards"]))
    evaluator = make_evaluator(experiment, prepare.validation_sets(d))

    with strategy_scope(strategy):
        model, embedder, head = build_face_model(experiment.model, manifest["num_classes"], d.image_size)
        schedule = WarmupSchedule(
            scaled_lr(t.lr, global_batch, t.lr_batch, t.lr_scaling), total_steps,
            warmup_steps=round(t.warmup_epochs * steps_per_epoch), kind=t.lr_schedule,
            boundaries=[round(e * steps_per_epoch) for e in t.lr_steps],
        )
        model.compile(optimizer=make_optimizer(t, schedule), loss=head.loss(), jit_compile=choice.jit_compile)
        model.optimizer.build(model.trainable_variables)  # now, not inside the first traced step
        start = cb.StepCheckpoint.restore(model, work_dir / "checkpoints")

    evaluator.embedder = embedder
    if replicas > 1:
        # Keras' predict_on_batch under a tf.distribute strategy feeds the whole batch to every replica (and,
        # across workers, is a collective the others would not join); on JAX a distribution splits it over the
        # devices, which needs a batch divisible by them: the chief evaluates a plain copy, outside any distribution.
        evaluator.embedder, evaluator.source = keras.models.clone_model(embedder), embedder
    run_wandb = start_wandb(experiment, work_dir) if chief else None
    callbacks = [keras.callbacks.TerminateOnNaN()]
    if chief:
        callbacks += [
            cb.StepCheckpoint(work_dir / "checkpoints", t.save_steps),
            keras.callbacks.CSVLogger(str(work_dir / "train_log.csv"), append=True),
            cb.WandbLogger(experiment.log.every_steps),
        ]
        if experiment.eval.every_steps:
            callbacks.append(cb.VerificationCallback(
                evaluator, experiment.eval.every_steps, work_dir / "eval_log.csv",
                experiment.eval.best_metric, work_dir / "checkpoints" / "best.weights.h5"))
    print(f"[arcface_keras] {experiment.name}: {manifest['num_images']} images, {manifest['num_classes']} classes, "
          f"{replicas} replica(s), global batch {global_batch}, {steps_per_epoch} steps/epoch × {t.epochs} epochs, "
          f"{choice.describe()}"
          + (f", resuming at step {start}" if start else ""), flush=True)
    began = time.time()
    with distribute.synchronized_batch_norm(model, t.sync_bn and replicas > 1), distribute.distributed_fit(model, strategy, dataset.element_spec):
        fit_from(model, dataset, start, steps_per_epoch, t.epochs, callbacks)
    if not np.isfinite(model_loss(model)):
        raise FloatingPointError(f"{experiment.name}: training stopped on a non-finite loss")
    train_seconds = time.time() - began

    result = {"step": cb.global_step(model), "train_seconds": round(train_seconds, 1)}
    if workers > 1:
        task_type, index = distribute.task(strategy)
        print(f"[arcface_keras] {task_type} {index}: trained weights sha1 {distribute.weights_fingerprint(embedder)}",
              flush=True)
    if chief:
        embedder.save(work_dir / ".embedder.tmp.keras")
        (work_dir / ".embedder.tmp.keras").replace(work_dir / "embedder.keras")
        metrics = evaluator()
        cb.append_csv(work_dir / "eval_log.csv", {"step": result["step"], **metrics})
        cb.log_wandb(metrics, result["step"])
        result.update(metrics)
        write_json(work_dir / "eval_report.json", {"experiment": experiment.name, **result, "sets": evaluator.reports})
        finish_wandb(run_wandb, result)
    return result


def fit_from(model, dataset, start, steps_per_epoch, epochs, callbacks):
    """`model.fit` from optimizer step `start`: first the rest of a partly done epoch, then whole epochs."""
    epoch, offset = divmod(start, steps_per_epoch)
    if epoch >= epochs:
        return
    if offset:
        model.fit(dataset, initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps_per_epoch - offset,
                  callbacks=callbacks, verbose=2, shuffle=False)
        epoch += 1
    if epoch < epochs:
        model.fit(dataset, initial_epoch=epoch, epochs=epochs, steps_per_epoch=steps_per_epoch,
                  callbacks=callbacks, verbose=2, shuffle=False)


def model_loss(model):
    history = getattr(model, "history", None)
    losses = history.history.get("loss", [0.0]) if history is not None else [0.0]
    return losses[-1] if losses else 0.0


def make_optimizer(t, schedule):
    """sgd: momentum SGD with decoupled weight decay, which moves only the sampled class centres of a
    Partial FC head (partial_fc.RowSparseSGD; exactly keras SGD otherwise); adamw: keras AdamW."""
    if t.optimizer == "sgd":
        return RowSparseSGD(schedule, momentum=t.momentum, weight_decay=t.weight_decay or None)
    if t.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=t.weight_decay)
    raise config_lib.ConfigError(f"train.optimizer={t.optimizer!r}: expected 'sgd' or 'adamw'")


class Evaluator:
    """Loads the verification sets once; calling it embeds them with the current embedder and scores them."""

    def __init__(self, sets, batch_size, flip):
        from arcface_keras.data.verification import load_verification_set

        self.sets = {name: load_verification_set(path) for name, path in sets.items()}
        self.batch_size = batch_size
        self.flip = flip
        self.embedder = None
        self.source = None  # a model whose weights `embedder` copies before each evaluation
        self.reports = {}

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
            self.reports[name] = {k: v for k, v in report.items() if not isinstance(v, (list, np.ndarray, dict))}
            for key, value in self.reports[name].items():
                metrics[f"{name}/{key}"] = value
        return metrics


def make_evaluator(experiment, sets):
    return Evaluator(sets, experiment.eval.batch_size, experiment.eval.flip)


def start_wandb(experiment, work_dir):
    """A W&B run with the full config; offline by default. Reruns of the same directory continue its run."""
    if experiment.log.wandb == "disabled":
        return None
    import wandb

    id_file = work_dir / "wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
    write_text(id_file, run_id + "\n")
    return wandb.init(project=experiment.log.wandb_project, name=experiment.name, id=run_id, resume="allow",
                      config=experiment.to_dict(), dir=str(work_dir), mode=experiment.log.wandb,
                      settings=wandb.Settings(console="off", silent=True))


def finish_wandb(run, result):
    if run is None:
        return
    for key, value in result.items():
        if isinstance(value, (int, float)):
            run.summary[key] = value
    run.finish()


def format_result(result):
    """One line per verification set: 'name: accuracy ± std (threshold)'."""
    names = sorted({k.split("/")[0] for k in result if "/" in k})
    return "\n".join(
        f"{name}: accuracy {100 * result[f'{name}/accuracy']:.2f}% ± {100 * result[f'{name}/std']:.2f}"
        f"  (threshold {result[f'{name}/threshold']:.2f}, {result.get(f'{name}/num_pairs', '?')} pairs)"
        for name in names
    )
