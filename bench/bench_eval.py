"""Time of the verification metrics on 6,000 pairs of precomputed 512-d embeddings (LFW-sized).

    python bench/bench_eval.py [--json rows.json]
"""
import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from arcface_keras.evaluation.verification import evaluate, kfold_accuracy, pair_distances  # noqa: E402
from arcface_keras.io import write_json  # noqa: E402


def best_time(function, repeats=5):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None, num_pairs=6000, dim=512):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (bench/run_all.py reads it)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    issame = np.arange(num_pairs) % 600 < 300  # LFW layout: each fold 300 same, then 300 different
    embeddings1 = rng.normal(size=(num_pairs, dim)).astype(np.float32)
    embeddings2 = np.where(issame[:, None], embeddings1, 0) + rng.normal(size=(num_pairs, dim)).astype(np.float32)
    distances = pair_distances(embeddings1, embeddings2)
    rows = [
        {"function": "evaluate", "ms": 1000 * best_time(lambda: evaluate(embeddings1, embeddings2, issame))},
        {"function": "kfold_accuracy", "ms": 1000 * best_time(lambda: kfold_accuracy(distances, issame))},
    ]
    title = f"10-fold verification metrics: {num_pairs} pairs, {dim}-d embeddings (best of 5)"
    print(title)
    for row in rows:
        print(f"{row['function']:15s} {row['ms']:7.1f} ms")
    if args.json:
        write_json(args.json, {"title": title, "columns": ["function", "ms"], "rows": rows})


if __name__ == "__main__":
    main()
