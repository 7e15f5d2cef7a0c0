"""How hard the synthetic task is: balanced verification pairs over labelled features, scored with the
insightface 10-fold protocol (raw pixels give the no-learning baseline)."""
import numpy as np

from arcface_keras.evaluation.verification import kfold_accuracy, l2_normalize, squared_distances


def verification_pairs(labels, pairs, seed=0):
    """Balanced same/different pairs, alternating so every contiguous fold is balanced: (first, second, issame)."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    members = {c: np.flatnonzero(labels == c) for c in classes}
    with_two = [c for c in classes if len(members[c]) >= 2]
    if not with_two or len(classes) < 2:
        raise ValueError(f"verification pairs need 2+ identities, one with 2+ images; got {len(classes)} identities")
    rng = np.random.default_rng([seed, 2])
    first, second = np.empty(pairs, int), np.empty(pairs, int)
    issame = np.arange(pairs) % 2 == 0
    for p in range(pairs):
        if issame[p]:
            first[p], second[p] = rng.choice(members[with_two[rng.integers(len(with_two))]], 2, replace=False)
        else:
            a, b = rng.choice(classes, 2, replace=False)
            first[p], second[p] = rng.choice(members[a]), rng.choice(members[b])
    return first, second, issame


def verification_accuracy(features, labels, pairs=1000, seed=0):
    """10-fold verification accuracy (insightface protocol) of cosine similarity between feature vectors.

    Each feature is normalised once and the pairs are scored a block at a time (~16 MB of float64): raw
    pixels (37,632 values per image) then cost a few blocks instead of four arrays of every pair's values."""
    unit = l2_normalize(np.asarray(features, np.float64).reshape(len(features), -1))
    first, second, issame = verification_pairs(labels, pairs, seed)
    step = max(1, 2**21 // unit.shape[1])
    distances = [squared_distances(unit[first[i:i + step]], unit[second[i:i + step]]) for i in range(0, pairs, step)]
    return kfold_accuracy(np.concatenate(distances), issame)


def raw_pixel_accuracy(images, labels, pairs=1000, seed=0):
    """The no-learning baseline: verification accuracy of centred, L2-normalised raw pixels."""
    return verification_accuracy((np.asarray(images, np.float32) - 127.5) / 127.5, labels, pairs, seed)


# ---------------------------------------------------------------------------------------------- folders
