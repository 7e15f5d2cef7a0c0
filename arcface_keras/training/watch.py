"""What a run says while it runs, wired in two calls: `watch` before fit (the chief's progress
callbacks, the run's records, the augmentation grid) and `finish` after the final evaluation
(its panels, the summary metrics and the embedder with eval_report.json as a W&B artifact).
"""
from pathlib import Path

from arcface_keras.training import panels, records
from arcface_keras.training.progress import Progress


def watch(experiment, run_dir, folder, steps_per_epoch, total_steps, global_batch, start_step):
    """Open the run's records (W&B step axis, TensorBoard) and return the callbacks to put first in fit's list."""
    records.open_records(run_dir, experiment.log.tensorboard)
    panels.log_augmentations(folder, experiment.data.image_size, experiment.data.augment, experiment.train.seed,
                             Path(run_dir) / "augmentations.png", start_step)
    return [Progress(experiment.log.every_steps, steps_per_epoch, total_steps, global_batch)]


def finish(run, evaluator, run_dir, result):
    """After the final evaluation (logged at result["step"]) and eval_report.json: panels, summary, artifact."""
    panels.log_verification(evaluator, result["step"])
    records.current.close()
    if run is None:
        return
    import wandb

    for key, value in result.items():
        if isinstance(value, (int, float)):
            run.summary[key] = value
    artifact = wandb.Artifact(f"embedder-{run.id}", type="model", metadata=result)
    artifact.add_file(str(Path(run_dir) / "embedder.keras"))
    artifact.add_file(str(Path(run_dir) / "eval_report.json"))
    run.log_artifact(artifact, aliases=["latest", f"step-{result['step']}"])
    run.finish()
