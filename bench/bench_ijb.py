"""IJB evaluator costs: align + embed throughput (IR-50, MobileFaceNet) and pooling + scoring at IJB-C size.

    python bench/bench_ijb.py [--quick] [--json rows.json]

Scoring runs on synthetic features of IJB-C's size (469,375 images in 23,124 templates, 15,658,489
template pairs of which 19,557 genuine; 1:N with galleries of 1,772 and 1,759 templates and 19,593
probes), before TensorFlow is imported, so the peak resident memory is the scoring's own. Embedding
times loose crops written here (synthetic faces turned and shifted on 150x150 canvases), read with
4 threads, aligned and embedded with flip at batch 32 by untrained backbones (speed does not depend
on the weights). --quick divides the sizes by 10 and embeds fewer crops.
"""
import argparse
import pathlib
import resource
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from arcface_keras.data.ijb import IJBProtocol  # noqa: E402
from arcface_keras.io import write_json  # noqa: E402

IJBC = {"images": 469_375, "templates": 23_124, "pairs": 15_658_489, "genuine": 19_557,
        "galleries": (1_772, 1_759), "probes": 19_593}


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synthetic_protocol(scale, dim=512, seed=0):
    """Random features and an IJB-C-shaped protocol, `scale` times its size."""
    rng = np.random.default_rng(seed)
    n, t = int(IJBC["images"] * scale), int(IJBC["templates"] * scale)
    templates = np.sort(np.r_[np.arange(t), rng.integers(0, t, n - t)])
    medias = templates * 8 + rng.integers(0, 8, n)
    pairs = rng.integers(0, t, (int(IJBC["pairs"] * scale), 2))
    labels = np.zeros(len(pairs), bool)
    labels[rng.choice(len(pairs), int(IJBC["genuine"] * scale), replace=False)] = True
    subjects = rng.permutation(t)  # every template its own subject: G1, G2 and probes split them
    g1, g2 = (int(g * scale) for g in IJBC["galleries"])
    probes = rng.choice(np.arange(g1 + g2), int(IJBC["probes"] * scale))
    protocol = IJBProtocol(None, "ijbc", [""] * n, None, rng.uniform(0.5, 1, n).astype(np.float32), templates,
                           medias, pairs, labels, {"G1": (np.arange(g1), subjects[:g1]),
                                                   "G2": (np.arange(g1, g1 + g2), subjects[g1:g1 + g2])},
                           (np.arange(t)[-len(probes):], subjects[probes]))
    features = rng.standard_normal((n, dim), np.float32).astype(np.float16)
    return protocol, features


def bench_scoring(scale):
    from arcface_keras.evaluation.ijb import score_protocol

    protocol, features = synthetic_protocol(scale)
    begin = time.perf_counter()
    report, *_ = score_protocol(protocol, features)
    total = time.perf_counter() - begin
    t = report["timings"]
    return [{"stage": f"pool {len(features):,} images → {report['templates']:,} templates", "seconds": t["pool_s"]},
            {"stage": f"score {report['pairs']:,} pairs + TAR@FAR", "seconds": t["verify_s"]},
            {"stage": "1:N two galleries", "seconds": t["identify_s"]},
            {"stage": f"total (peak RSS {peak_rss_gb():.2f} GB)", "seconds": total}]


def write_crops(folder, count):
    import cv2

    from arcface_keras.data.synthetic import TEMPLATE, render_identity_image

    rng = np.random.default_rng(1)
    (folder / "loose_crop").mkdir(parents=True)
    names, landmarks = [], []
    for i in range(count):
        matrix = cv2.getRotationMatrix2D((56, 56), rng.uniform(-15, 15), rng.uniform(0.8, 1.1))
        matrix[:, 2] += rng.uniform(10, 30, 2)
        face = cv2.cvtColor(render_identity_image(0, i % 50, i), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / "loose_crop" / f"{i}.jpg"), cv2.warpAffine(face, matrix, (150, 150)))
        names.append(f"{i}.jpg"), landmarks.append(TEMPLATE @ matrix[:, :2].T + matrix[:, 2])
    return IJBProtocol(folder, "ijbc", names, np.array(landmarks, np.float32), np.ones(count, np.float32),
                       np.arange(count), np.arange(count), None, None, {}, None)


def bench_embedding(protocol, models):
    from arcface_keras.evaluation.ijb import _load_aligned, embed_protocol
    from arcface_keras.registry import BACKBONES

    begin = time.perf_counter()
    for name, points in zip(protocol.names, protocol.landmarks):
        _load_aligned(protocol.root / "loose_crop" / name, points, (112, 112))
    rows = [{"stage": "read + align (one thread)", "seconds": time.perf_counter() - begin}]
    for model in models:
        embedder = BACKBONES.build(model)
        embed_protocol(embedder, protocol, batch_size=32, flip=True)  # warm-up: trace the graph
        begin = time.perf_counter()
        embed_protocol(embedder, protocol, batch_size=32, flip=True)
        rows.append({"stage": f"read + align + embed with flip: {model}", "seconds": time.perf_counter() - begin})
    for row in rows:
        row["img/s"] = len(protocol.names) / row["seconds"]
        row["s per 1,000"] = 1000 / row["img/s"]
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of IJB-C's size, fewer crops")
    parser.add_argument("--crops", type=int, default=256, help="loose crops to embed")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (bench/run_all.py reads it)")
    args = parser.parse_args(argv)
    scale, crops = (0.1, 64) if args.quick else (1.0, args.crops)
    rows = bench_scoring(scale)
    with tempfile.TemporaryDirectory() as folder:
        rows += bench_embedding(write_crops(pathlib.Path(folder), crops), ["mobilefacenet", "resnet50"])
    title = f"IJB evaluator: pooling + scoring at {scale:g}x IJB-C, align + embed of {crops} crops at 112x112"
    print(title)
    for row in rows:
        extra = f"  {row['img/s']:8.1f} img/s  {row['s per 1,000']:7.1f} s per 1,000" if "img/s" in row else ""
        print(f"{row['stage']:55s} {row['seconds']:8.2f} s{extra}")
    if args.json:
        write_json(args.json, {"title": title, "columns": ["stage", "seconds", "img/s", "s per 1,000"], "rows": rows})


if __name__ == "__main__":
    main()
