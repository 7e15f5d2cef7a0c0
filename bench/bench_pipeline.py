"""Throughput of the input pipeline: TFRecord shards → decode → batch → augment, in images per second.

Writes a few thousand generated 112×112 JPEGs into a temporary TFRecord set, then times each
augmentation list with 1 and 2 parallel map calls. "per core" is images per CPU-second of the
process, what the pipeline costs wherever it runs. Compare with the training rate: the pipeline
must stay ahead of the model.

    python bench/bench_pipeline.py [--images 3000] [--batch 128] [--calls 1 2]
"""
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # noqa: E401,E702

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from arcface_keras.augment import build_augmentation  # noqa: E402
from arcface_keras.data.pipeline import decode_image  # noqa: E402
from arcface_keras.data.tfrecord import read_examples, write_shards  # noqa: E402
from arcface_keras.registry import AUGMENTATIONS  # noqa: E402

ARCFACE_TF2 = ["flip", "random_crop",
               {"type": "color_jitter", "p": 1.0, "brightness": 0.4, "contrast": 0, "saturation": [0.6, 1.4], "hue": 0}]


def face_like_jpegs(count, size=112, seed=0):
    """Smooth random images with an ellipse and some grain, JPEG quality 95 (like aligned crops)."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = cv2.resize(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
        color = tuple(int(c) for c in rng.integers(60, 230, 3))
        cv2.ellipse(image, (size // 2, size // 2), (size // 3, size // 2 - 8), 0, 0, 360, color, -1)
        image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
        yield cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes(), i % 100


def pipeline(folder, batch, specs, calls, image_size=112):
    images = read_examples(folder).map(lambda data, label: (decode_image(data, image_size), label),
                                       num_parallel_calls=calls)
    batches = images.batch(batch, drop_remainder=True)
    if specs is not None:
        augment = build_augmentation(specs, seed=0)
        batches = batches.map(lambda x, y: (augment(x), y), num_parallel_calls=calls)
    return batches.prefetch(2)


def measure(dataset, repeats):
    """(img/s, img per CPU-second) over `repeats` passes, after one untimed batch (tracing)."""
    iterator = iter(dataset.repeat(repeats + 1))
    next(iterator)
    count, wall, cpu = 0, time.perf_counter(), time.process_time()
    for images, _ in iterator:
        count += int(images.shape[0])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count / wall, count / max(cpu, 1e-9)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000, help="generated JPEGs (default 3000)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 2], help="parallel map calls to try (default 1 2)")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the set per measurement (default 1)")
    args = parser.parse_args(argv)

    print(f"{os.cpu_count()} CPU cores visible, TensorFlow {tf.__version__}; "
          f"{args.images} JPEGs 112x112, batch {args.batch}")
    with tempfile.TemporaryDirectory() as folder:
        write_shards(face_like_jpegs(args.images), folder, 8, {"num_classes": 100}, workers=2)
        rows = [("decode only", None), ("flip", ["flip"]), ("arcface-tf2 (flip, crop, colour)", ARCFACE_TF2),
                ("all, default p", AUGMENTATIONS.names())]
        rows += [(f"{name} alone, p=1", [{"type": name, "p": 1.0}]) for name in AUGMENTATIONS.names()]
        print(f"{'pipeline':34s}" + "".join(f"{f'{c} call(s): img/s  per core':>30s}" for c in args.calls))
        for title, specs in rows:
            line = f"{title:34s}"
            for calls in args.calls:
                rate, per_core = measure(pipeline(folder, args.batch, specs, calls), args.repeats)
                line += f"{rate:19.0f} {per_core:10.0f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
