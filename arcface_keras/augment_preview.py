"""What an augmentation pipeline does, as a grid: one row per image, one column per transform.

Columns: the original, each augmentation alone (applied with p = 1), then the whole pipeline with
its own probabilities. Drawn by tools/preview_augment.py and logged at the start of a run.
"""
import numpy as np


def columns(images, specs, seed):
    """[(title, augmented batch)] of float images in [0, 255]: original, each spec alone at p = 1, the pipeline."""
    from arcface_keras.augment import build_augmentation
    from arcface_keras.registry import split_spec

    batch = np.asarray(images).astype("float32")
    result = [("original", batch)]
    for spec in specs:
        name, options = split_spec(spec, "augmentation")
        alone = build_augmentation([{"type": name, **options, "p": 1.0}], seed=seed)
        result.append((f"{name} (p=1)", np.asarray(alone(batch))))
    result.append(("pipeline", np.asarray(build_augmentation(specs, seed=seed)(batch))))
    return result


def save_grid(cols, out):
    """Write the grid of `columns(...)` as a PNG (atomically)."""
    from matplotlib.figure import Figure

    from arcface_keras.io import atomic_path

    rows = len(cols[0][1])
    figure = Figure(figsize=(1.6 * len(cols), 1.6 * rows + 0.3))
    axes = figure.subplots(rows, len(cols), squeeze=False)
    for c, (title, batch) in enumerate(cols):
        axes[0, c].set_title(title, fontsize=8)
        for r in range(rows):
            axes[r, c].imshow(np.clip(batch[r], 0, 255).astype("uint8"))
            axes[r, c].axis("off")
    figure.tight_layout()
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
