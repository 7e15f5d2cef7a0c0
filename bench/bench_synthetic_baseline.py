"""Synthetic identities: generation speed, and how far no-learning baselines get on held-out identities.

    python bench/bench_synthetic_baseline.py [--identities 40] [--images 10] [--pairs 1000] [--write 50x20]

Speed: rendering alone, and writing JPEG folders with write_identities (one process). Baselines:
10-fold verification (insightface protocol) on balanced pairs of held-out identities, scored by
cosine similarity of raw centred pixels, of a colour histogram of the face centre, and of HOG.
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from skimage.feature import hog  # noqa: E402

from arcface_keras.data.synthetic import (  # noqa: E402
    raw_pixel_accuracy,
    render_identities,
    verification_accuracy,
    write_identities,
)

HELD_OUT = 100_000  # first held-out identity: far from any training range


def colour_histogram(image):
    """Square-rooted 8x8x8 RGB histogram of the central 56x56 (skin, eyes, mouth)."""
    centre = np.ascontiguousarray(image[28:84, 28:84])
    counts = cv2.calcHist([centre], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3).ravel()
    return np.sqrt(counts / counts.sum())


def hog_features(image):
    return hog(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2))


def report(what, images, seconds, cpu_seconds):
    """Wall-clock rate, and CPU time per image (the steadier figure on a shared machine)."""
    print(f"{what:15s} {images / seconds:7.0f} images/s, {1000 * cpu_seconds / images:.2f} ms CPU per image"
          f" ({images} images; 300 x 40 on one core: ~{12000 * cpu_seconds / images:.0f} s CPU)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=40, help="held-out identities for the baselines")
    parser.add_argument("--images", type=int, default=10, help="images per held-out identity")
    parser.add_argument("--pairs", type=int, default=1000, help="verification pairs (half same, half different)")
    parser.add_argument("--write", default="50x20", help="identities x images written to time write_identities")
    args = parser.parse_args(argv)

    start, cpu = time.perf_counter(), time.process_time()
    images, labels = render_identities(0, args.identities, args.images, first_identity=HELD_OUT)
    report("render", len(images), time.perf_counter() - start, time.process_time() - cpu)

    identities, per_identity = (int(v) for v in args.write.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time()
        write_identities(tmp, identities, per_identity, seed=0)
        report("write JPEGs", identities * per_identity, time.perf_counter() - start, time.process_time() - cpu)

    print(f"held-out verification, {args.identities} identities x {args.images} images, {args.pairs} pairs:")
    baselines = {
        "raw pixels": lambda: raw_pixel_accuracy(images, labels, args.pairs),
        "colour hist": lambda: verification_accuracy([colour_histogram(i) for i in images], labels, args.pairs),
        "HOG": lambda: verification_accuracy([hog_features(i) for i in images], labels, args.pairs),
    }
    for name, score in baselines.items():
        result = score()
        print(f"  {name:13s} {100 * result['accuracy']:5.1f}% ± {100 * result['std']:.1f}")


if __name__ == "__main__":
    main()
