"""The insightface verification protocol: flip-summed embeddings, squared L2, 10 contiguous folds.

`evaluate` is the one entry point: 10-fold accuracy exactly as insightface reports it, plus the
ROC over all distinct distances, its AUC, the equal error rate and TAR at fixed FARs.
"""
import numpy as np

THRESHOLDS = np.arange(0, 4, 0.01)
FARS = {"1e-1": 1e-1, "1e-2": 1e-2, "1e-3": 1e-3, "1e-4": 1e-4}
# Reported metrics where higher is better: what eval.best_metric may keep the best checkpoint by.
BEST_METRICS = ("accuracy", "auc", *(f"tar@far={name}" for name in FARS))


def fold_slices(n, n_folds=10):
    """Contiguous folds exactly as sklearn's KFold(n_splits, shuffle=False): the first n % k folds get one more."""
    if n < n_folds:
        raise ValueError(f"{n} pairs cannot be split into {n_folds} folds")
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    ends = np.cumsum(sizes)
    return [slice(end - size, end) for end, size in zip(ends, sizes)]


def kfold_accuracy(distances, issame, n_folds=10, thresholds=THRESHOLDS):
    """Accuracy of `distance < threshold` with the threshold chosen on the other folds.

    For each fold the threshold with the best accuracy on the remaining folds (the first on ties,
    as np.argmax) is scored on the fold. Returns dict(accuracy=mean, std=population std,
    threshold=mean chosen threshold, fold_accuracies, fold_thresholds).
    """
    distances = np.asarray(distances, np.float64)
    issame = np.asarray(issame, bool)
    folds = fold_slices(len(distances), n_folds)
    # Correct decisions per (threshold, fold): same pairs below the threshold + different pairs at or above it.
    per_fold = np.empty((len(thresholds), n_folds), np.int64)
    for k, s in enumerate(folds):
        same = np.sort(distances[s][issame[s]])
        different = np.sort(distances[s][~issame[s]])
        below_same = np.searchsorted(same, thresholds, side="left")
        below_different = np.searchsorted(different, thresholds, side="left")
        per_fold[:, k] = below_same + len(different) - below_different
    sizes = np.array([s.stop - s.start for s in folds])
    total = per_fold.sum(axis=1, keepdims=True)
    train_accuracy = (total - per_fold) / (len(distances) - sizes)
    best = np.argmax(train_accuracy, axis=0)  # (K,) first best on ties
    accuracies = per_fold[best, np.arange(len(folds))] / sizes
    return {
        "accuracy": float(accuracies.mean()),
        "std": float(accuracies.std()),
        "threshold": float(thresholds[best].mean()),
        "fold_accuracies": accuracies.tolist(),
        "fold_thresholds": thresholds[best].tolist(),
    }


def l2_normalize(x, axis=1):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def pair_distances(embeddings1, embeddings2):
    """Squared L2 distance between L2-normalised embeddings (in [0, 4])."""
    return squared_distances(l2_normalize(embeddings1), l2_normalize(embeddings2))


def squared_distances(unit1, unit2):
    """Squared L2 distance between rows that are already unit length."""
    diff = unit1 - unit2
    return np.sum(diff * diff, axis=1)


def roc_curve(distances, issame):
    """ROC of the rule `distance <= t` over every distinct distance t.

    Returns (fpr, tpr, thresholds, false_positives): the curve starts at (0, 0) with t = -inf and
    ends at (1, 1); `false_positives` counts the different pairs accepted at each point.
    """
    distances = np.asarray(distances, np.float64)
    issame = np.asarray(issame, bool)
    order = np.argsort(distances, kind="stable")
    sorted_distances, sorted_same = distances[order], issame[order]
    last_of_value = np.r_[sorted_distances[1:] != sorted_distances[:-1], True]
    true_positives = np.r_[0, np.cumsum(sorted_same)[last_of_value]]
    false_positives = np.r_[0, np.cumsum(~sorted_same)[last_of_value]]
    thresholds = np.r_[-np.inf, sorted_distances[last_of_value]]
    return false_positives / (~issame).sum(), true_positives / issame.sum(), thresholds, false_positives


def equal_error_rate(fpr, tpr):
    """The rate where false accepts equal false rejects, on the linearly interpolated ROC."""
    gap = (1 - tpr) - fpr  # from 1 at (0, 0) down to -1 at (1, 1)
    i = int(np.argmax(gap <= 0))
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tar_at_far(tpr, false_positives, num_different, far):
    """Best true accept rate with at most floor(far * num_different) false accepts."""
    allowed = np.floor(far * num_different + 1e-9)
    return float(tpr[np.searchsorted(false_positives, allowed, side="right") - 1])


def evaluate(embeddings1, embeddings2, issame, n_folds=10):
    """Verification metrics of pairs (embeddings1[i], embeddings2[i]) labelled issame[i].

    Embeddings are (N, D), normalised here. Returns a dict: accuracy, std, threshold (insightface
    10-fold protocol, fractions in [0, 1]), fold_accuracies, fold_thresholds, "tar@far=1e-k" for
    each FAR with at least 1/FAR different pairs, auc, eer, num_pairs, num_same, num_different,
    "roc" (dict of fpr, tpr, thresholds arrays) and "distances" (N,) (drop both before writing JSON).
    """
    embeddings1, embeddings2 = np.asarray(embeddings1), np.asarray(embeddings2)
    issame = np.asarray(issame, bool)
    if embeddings1.ndim != 2 or embeddings1.shape != embeddings2.shape or len(issame) != len(embeddings1):
        raise ValueError(
            f"expected two (N, D) embedding arrays and N labels, got {embeddings1.shape}, "
            f"{embeddings2.shape} and {issame.shape}"
        )
    num_same = int(issame.sum())
    num_different = len(issame) - num_same
    if num_same == 0 or num_different == 0:
        raise ValueError(f"verification needs both same and different pairs, got {num_same} same and {num_different} different")
    distances = pair_distances(embeddings1, embeddings2)
    result = kfold_accuracy(distances, issame, n_folds)
    fpr, tpr, thresholds, false_positives = roc_curve(distances, issame)
    for name, far in FARS.items():
        if far * num_different >= 1 - 1e-9:
            result[f"tar@far={name}"] = tar_at_far(tpr, false_positives, num_different, far)
    result.update(
        auc=float(np.trapezoid(tpr, fpr)),
        eer=equal_error_rate(fpr, tpr),
        num_pairs=len(issame),
        num_same=num_same,
        num_different=num_different,
        roc={"fpr": fpr, "tpr": tpr, "thresholds": thresholds},
        distances=distances,
    )
    return result
