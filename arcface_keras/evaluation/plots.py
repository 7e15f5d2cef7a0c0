"""ROC curves of verification sets as a PNG (TAR against FAR on a log axis)."""
import numpy as np
from matplotlib.figure import Figure

from arcface_keras.io import atomic_path


def plot_roc(curves, path, title="ROC"):
    """Write one curve per set: `curves` maps a set name to (fpr, tpr) arrays; FAR axis in log scale."""
    figure = Figure(figsize=(6, 4.5), dpi=120)
    axes = figure.subplots()
    smallest = 0.1
    for name, (fpr, tpr) in curves.items():
        fpr, tpr = np.asarray(fpr), np.asarray(tpr)
        positive = fpr > 0  # log axis: the (0, tpr) points cannot be drawn
        smallest = min(smallest, fpr[positive].min(initial=1.0))
        axes.plot(fpr[positive], tpr[positive], label=name)
    axes.set_xscale("log")
    axes.set_xlim(max(smallest, 1e-6), 1.0)
    axes.set_ylim(0.0, 1.01)
    axes.set_xlabel("false accept rate (FAR)")
    axes.set_ylabel("true accept rate (TAR)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
