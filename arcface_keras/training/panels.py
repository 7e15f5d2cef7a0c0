"""W&B panels that show what a face model gets wrong, logged only while a W&B run is active.

At each verification, per set `<set>`:
- `<set>/roc`: TAR against log10 FAR (a W&B line chart over the table `<set>/roc_table`);
- `<set>/scores`: histograms of genuine and impostor similarities with the chosen threshold;
- `<set>/worst_impostors`, `<set>/worst_genuines`: the highest-scoring different-identity pairs and
  the lowest-scoring same-identity pairs, each image pair side by side, captioned with its score.

Scores are cosine similarities of the flip-summed, normalised embeddings, 1 - d/2 for the
protocol's squared L2 distance d; the threshold is the protocol's mean chosen threshold, converted.
At the start, `augmentations` shows the augmentation grid of tools/preview_augment.py.
"""
import sys

import numpy as np

from arcface_keras.training import records

WORST = 8  # pairs per worst-mistakes panel
ROC_POINTS = 200  # at most this many points of the ROC are drawn


def active_wandb():
    wandb = sys.modules.get("wandb")  # a run can only be active where wandb is already imported
    return wandb if wandb is not None and wandb.run is not None else None


def log_verification(evaluator, step):
    """Log the panels of every set of `evaluator`'s latest scoring at `step`."""
    wandb = active_wandb()
    if wandb is None:
        return
    row = {}
    for name, report in evaluator.details.items():
        images, issame = evaluator.sets[name]
        issame = np.asarray(issame, bool)
        similarity = 1.0 - report["distances"] / 2.0
        threshold = 1.0 - report["threshold"] / 2.0
        row[f"{name}/roc"] = roc_chart(wandb, report["roc"]["fpr"], report["roc"]["tpr"], name)
        row[f"{name}/scores"] = wandb.Image(score_histogram(similarity, issame, threshold, name))
        impostors, genuines = worst_pairs(similarity, issame)
        row[f"{name}/worst_impostors"] = pair_images(wandb, images, similarity, impostors, "impostor")
        row[f"{name}/worst_genuines"] = pair_images(wandb, images, similarity, genuines, "genuine")
    records.log(row, step)


def roc_points(fpr, tpr, limit=ROC_POINTS):
    """(log10 FAR, TAR) at the ROC's points with FAR > 0, thinned to at most `limit` spread evenly in log FAR."""
    fpr, tpr = np.asarray(fpr), np.asarray(tpr)
    keep = fpr > 0
    log_far, tar = np.log10(fpr[keep]), tpr[keep]
    if len(log_far) > limit:
        grid = np.linspace(log_far[0], log_far[-1], limit)
        chosen = np.unique(np.searchsorted(log_far, grid, side="right") - 1)
        log_far, tar = log_far[chosen], tar[chosen]
    return log_far, tar


def roc_chart(wandb, fpr, tpr, name):
    log_far, tar = roc_points(fpr, tpr)
    table = wandb.Table(data=[[float(x), float(y)] for x, y in zip(log_far, tar)], columns=["log10 FAR", "TAR"])
    return wandb.plot.line(table, "log10 FAR", "TAR", title=f"{name}: ROC")


def score_histogram(similarity, issame, threshold, name):
    """RGB array of the genuine and impostor similarity histograms, the threshold a vertical line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.2), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots()
    bins = np.linspace(-1, 1, 81)
    axes.hist(similarity[issame], bins=bins, alpha=0.6, label=f"genuine ({issame.sum()})", color="tab:green")
    axes.hist(similarity[~issame], bins=bins, alpha=0.6, label=f"impostor ({(~issame).sum()})", color="tab:red")
    axes.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    axes.set_xlabel("cosine similarity")
    axes.set_ylabel("pairs")
    axes.set_title(f"{name}: pair scores")
    axes.legend(fontsize=7)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def worst_pairs(similarity, issame, count=WORST):
    """Indices of the `count` highest-scoring impostor pairs and the `count` lowest-scoring genuine pairs."""
    impostors = np.flatnonzero(~issame)
    genuines = np.flatnonzero(issame)
    return (impostors[np.argsort(-similarity[impostors], kind="stable")[:count]],
            genuines[np.argsort(similarity[genuines], kind="stable")[:count]])


def pair_images(wandb, images, similarity, indices, kind):
    """Each pair's two images side by side, captioned with its index and similarity."""
    return [wandb.Image(np.concatenate([images[2 * i], images[2 * i + 1]], axis=1),
                        caption=f"{kind} pair {i}: similarity {similarity[i]:.3f}") for i in indices]


def log_augmentations(folder, image_size, specs, seed, out, step, rows=4):
    """Draw the augmentation grid of the first `rows` training images to `out` and log it."""
    wandb = active_wandb()
    if wandb is None:
        return
    from arcface_keras.augment_preview import columns, save_grid
    from arcface_keras.data.pipeline import decode_image
    from arcface_keras.data.tfrecord import read_examples

    images = [decode_image(image, image_size).numpy() for image, _ in read_examples(folder).take(rows)]
    save_grid(columns(np.stack(images), specs, seed), out)
    records.log({"augmentations": wandb.Image(str(out))}, step)
