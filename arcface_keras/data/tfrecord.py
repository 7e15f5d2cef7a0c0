"""Sharded TFRecords of encoded face images with a manifest.json describing the label space."""
import contextlib
import json
import queue
import re
import threading
from pathlib import Path

import tensorflow as tf

from arcface_keras.config import MANIFEST
from arcface_keras.io import atomic_path, write_json

FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
}


def encode_example(image_bytes, label):
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)  # map keys sorted: the same bytes in every run


def shard_name(index, num_shards):
    return f"train-{index:05d}-of-{num_shards:05d}.tfrecord"


class _Stopped(Exception):
    """Raised in a writer thread when another part of the conversion failed."""


def write_records(items, out_dir, num_shards, workers=1, prepare=None):
    """Write items round-robin into `num_shards` shards from `workers` threads; returns {shard: count}.

    Item i goes to shard i % num_shards, and each thread writes its own shards, so the result does
    not depend on `workers`. `prepare(item)` runs in the threads (decoding and reading release the
    GIL, as does TFRecordWriter.write) and returns (image bytes, label), or None to leave the item
    out; without it items are (image bytes, label) pairs. Shards are written under temporary names
    and renamed when complete; on error the unfinished ones are removed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers, num_shards))
    names = [shard_name(i, num_shards) for i in range(num_shards)]
    counts = [0] * num_shards
    prepare = prepare or (lambda item: item)
    tasks = [queue.Queue(maxsize=256) for _ in range(workers)]
    errors = []

    def stop_if_failed():
        if errors:
            raise _Stopped()

    def work(worker):
        task = ()
        try:
            with contextlib.ExitStack() as stack:
                writers = {}
                for shard in range(worker, num_shards, workers):
                    tmp = stack.enter_context(atomic_path(out_dir / names[shard]))
                    writers[shard] = stack.enter_context(tf.io.TFRecordWriter(str(tmp)))
                while (task := tasks[worker].get()) is not None:
                    stop_if_failed()
                    shard, item = task
                    example = prepare(item)
                    if example is not None:
                        writers[shard].write(encode_example(*example))
                        counts[shard] += 1
                stop_if_failed()  # a failure elsewhere: leave no shard behind
        except BaseException as error:  # noqa: BLE001 — re-raised by the caller below
            errors.append(error)
            while task is not None:  # keep taking tasks, so that the producer never blocks
                task = tasks[worker].get()

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(workers)]
    for thread in threads:
        thread.start()
    try:
        for i, item in enumerate(items):
            stop_if_failed()
            tasks[i % num_shards % workers].put((i % num_shards, item))
    except BaseException as error:
        errors.append(error)
    finally:
        for worker_tasks in tasks:
            worker_tasks.put(None)
        for thread in threads:
            thread.join()
    failures = [e for e in errors if not isinstance(e, _Stopped)]
    if failures:
        raise failures[0]
    return dict(zip(names, counts))


def relabel_shards(out_dir, names, new_label):
    """Rewrite the shards `names` of `out_dir` with every label l replaced by new_label[l], each atomically."""
    for name in names:
        path = Path(out_dir) / name
        examples = tf.data.TFRecordDataset(str(path)).map(parse_example).as_numpy_iterator()
        with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
            for image, label in examples:
                writer.write(encode_example(image, new_label[label]))


def write_shards(examples, out_dir, num_shards, manifest, workers=1):
    """Write (image_bytes, label) pairs round-robin into `num_shards` shards, then the manifest.

    The manifest is written last, so a folder with a manifest is always complete. Returns the
    manifest dict (`manifest` plus num_images and shards).
    """
    shards = write_records(examples, out_dir, num_shards, workers=workers)
    manifest = {**manifest, "num_images": sum(shards.values()), "shards": shards}
    write_json(Path(out_dir) / MANIFEST, manifest)
    return manifest


def read_manifest(folder):
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; expected a TFRecord folder made by tools/make_tfrecord.py")
    manifest = json.loads(path.read_text())
    for key in ("num_classes", "num_images", "shards"):
        if key not in manifest:
            raise ValueError(f"{path}: missing key {key!r}")
    return manifest


def shard_paths(folder):
    manifest = read_manifest(folder)
    return [str(Path(folder) / name) for name in sorted(manifest["shards"])]


def parse_example(serialized):
    """Serialized tf.train.Example -> (encoded image bytes, int32 label)."""
    parsed = tf.io.parse_single_example(serialized, FEATURES)
    return parsed["image"], tf.cast(parsed["label"], tf.int32)


def read_examples(folder, shuffle_shards=False, seed=None, cycle_length=4):
    """A tf.data.Dataset of (encoded image, label) from a TFRecord folder, shards read interleaved.

    With `shuffle_shards`, the shards are read in an order fixed by `seed`, the same on every iteration.
    """
    files = tf.data.Dataset.from_tensor_slices(shard_paths(folder))
    if shuffle_shards:
        files = files.shuffle(len(shard_paths(folder)), seed=seed, reshuffle_each_iteration=False)
    records = files.interleave(
        tf.data.TFRecordDataset, cycle_length=cycle_length, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return records.map(parse_example, num_parallel_calls=tf.data.AUTOTUNE)


class ShardError(ValueError):
    """A shard that does not match its manifest; the message is one line naming the shard."""


def verify(folder):
    """Re-read every shard: counts must match the manifest and labels lie in [0, num_classes).

    Raises ShardError naming the shard for a missing, corrupt or truncated shard or a bad label.
    Returns {"num_images", "num_classes", "shards"}.
    """
    manifest = read_manifest(folder)
    num_classes = manifest["num_classes"]
    if sum(manifest["shards"].values()) != manifest["num_images"]:
        raise ShardError(f"{Path(folder) / MANIFEST}: num_images {manifest['num_images']} "
                         "is not the sum of the shard counts")
    for name, expected in sorted(manifest["shards"].items()):
        path = Path(folder) / name
        if not path.is_file():
            raise ShardError(f"{path}: shard listed in the manifest is missing")
        labels = tf.data.TFRecordDataset(str(path)).batch(1024).map(
            lambda batch: tf.io.parse_example(batch, {"label": FEATURES["label"]})["label"])
        count = 0
        try:
            for batch in labels.as_numpy_iterator():
                bad = batch[(batch < 0) | (batch >= num_classes)]
                if bad.size:
                    raise ShardError(f"{path}: label {bad[0]} outside [0, {num_classes}) of the manifest")
                count += batch.size
        except tf.errors.DataLossError as error:
            raise ShardError(f"{path}: corrupt or truncated TFRecord shard ({first_line(error.message)})") from None
        except tf.errors.InvalidArgumentError as error:
            raise ShardError(f"{path}: unreadable example ({first_line(error.message)})") from None
        if count != expected:
            raise ShardError(f"{path}: {count} examples, the manifest says {expected}")
    return {"num_images": manifest["num_images"], "num_classes": num_classes, "shards": len(manifest["shards"])}


def first_line(text):
    """The readable part of a TensorFlow error message: first line, without op and function names."""
    line = re.sub(r"\{\{.*?\}\}\s*", "", text.strip().splitlines()[0] if text.strip() else "")
    return line.split(" [Op:")[0].strip()
