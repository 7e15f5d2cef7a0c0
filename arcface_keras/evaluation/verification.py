"""The insightface verification protocol: flip-summed embeddings, squared L2, 10 contiguous folds."""
import numpy as np

THRESHOLDS = np.arange(0, 4, 0.01)


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
    correct = (distances[None, :] < thresholds[:, None]) == issame[None, :]  # (T, N)
    folds = fold_slices(len(distances), n_folds)
    per_fold = np.stack([correct[:, s].sum(axis=1) for s in folds], axis=1)  # (T, K) correct counts
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
    diff = l2_normalize(embeddings1) - l2_normalize(embeddings2)
    return np.sum(diff * diff, axis=1)
