"""Sharded TFRecords of encoded face images with a manifest.json describing the label space."""
import contextlib
import json
from pathlib import Path

import tensorflow as tf

from arcface_keras.io import atomic_path, write_json

MANIFEST = "manifest.json"
FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
}


def encode_example(image_bytes, label):
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def shard_name(index, num_shards):
    return f"train-{index:05d}-of-{num_shards:05d}.tfrecord"


def write_shards(examples, out_dir, num_shards, manifest):
    """Write (image_bytes, label) pairs round-robin into `num_shards` shards, then the manifest.

    Each shard is written under a temporary name and renamed when complete; the manifest is
    written last, so a folder with a manifest is always complete. Returns the manifest dict.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = [0] * num_shards
    names = [shard_name(i, num_shards) for i in range(num_shards)]
    with contextlib.ExitStack() as stack:  # on error every partial shard is removed
        tmps = [stack.enter_context(atomic_path(out_dir / name)) for name in names]
        writers = [stack.enter_context(tf.io.TFRecordWriter(str(tmp))) for tmp in tmps]
        for i, (image_bytes, label) in enumerate(examples):
            writers[i % num_shards].write(encode_example(image_bytes, label))
            counts[i % num_shards] += 1
        for writer in writers:
            writer.close()
    manifest = {**manifest, "num_images": sum(counts), "shards": dict(zip(names, counts))}
    write_json(out_dir / MANIFEST, manifest)
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
    """A tf.data.Dataset of (encoded image, label) from a TFRecord folder, shards read interleaved."""
    files = tf.data.Dataset.from_tensor_slices(shard_paths(folder))
    if shuffle_shards:
        files = files.shuffle(len(shard_paths(folder)), seed=seed, reshuffle_each_iteration=True)
    records = files.interleave(
        tf.data.TFRecordDataset, cycle_length=cycle_length, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return records.map(parse_example, num_parallel_calls=tf.data.AUTOTUNE)
