"""The training input pipeline: TFRecord shards → decode → augment → scale to [-1, 1] → batches."""
import functools

import numpy as np
import tensorflow as tf

from arcface_keras.data.decode import decode_image
from arcface_keras.data.tfrecord import read_examples


def scale(images):
    """[0, 255] → [-1, 1]: the one place input scaling happens, (x − 127.5) / 127.5."""
    return (images - 127.5) / 127.5


def pk_batches(examples, identities_per_batch, images_per_identity, seed):
    """Regroup a shuffled (bytes, label) stream into batches of P identities × K images each."""
    k = images_per_identity
    groups = examples.group_by_window(
        key_func=lambda image, label: tf.cast(label, tf.int64),
        reduce_func=lambda key, window: window.batch(k, drop_remainder=True),
        window_size=k,
    )
    groups = groups.shuffle(1024, seed=seed, reshuffle_each_iteration=False).batch(identities_per_batch,
                                                                                     drop_remainder=True)
    return groups.map(lambda images, labels: (tf.reshape(images, [-1]), tf.reshape(labels, [-1])))


def epoch_seed(seed, epoch):
    """The seed of epoch `epoch`'s data order: a pure function of (seed, epoch)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def epoch_batches(folder, batch_size, seed, shuffle_buffer, sampler, images_per_identity):
    """An endless stream of encoded batches (bytes (B,), labels (B,)) in the order `seed` fixes.

    No shuffle reshuffles per iteration: every iterator of the stream gives the same order, however
    often a trainer iterates it (Keras' JAX trainer draws one batch to build the model, then starts over).
    """
    examples = read_examples(folder, shuffle_shards=True, seed=seed).repeat()
    examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
    if sampler == "pk":
        return pk_batches(examples, batch_size // images_per_identity, images_per_identity, seed)
    return examples.batch(batch_size, drop_remainder=True)


def batch_key(encoded_images):
    """A fingerprint of an encoded batch (its images' bytes in order): the seed of its augmentation.

    A function of the batch's content, so of (seed, epoch) like the batch itself; no batch counter,
    which would be a dataset source that the multi-worker FILE auto-shard cannot split.
    """
    hashes = tf.strings.to_hash_bucket_fast(encoded_images, 2**62)
    positions = tf.range(1, tf.size(hashes, out_type=tf.int64) + 1)
    return tf.reduce_sum(hashes * positions)  # int64 arithmetic wraps: still a pure function of the bytes


def train_dataset(folder, batch_size, image_size, steps_per_epoch, epochs, start=0, augment=None,
                  shuffle_buffer=20000, seed=0, sampler="random", images_per_identity=4):
    """The ((images, labels), labels) batches for `model.fit` from batch `start` to the end of `epochs`.

    Epoch e is `steps_per_epoch` batches in an order fixed by (seed, e) alone, and each batch is
    augmented with the seed (seed, batch_key of its images): the stream from `start` on is exactly
    the rest of the stream from 0, so a run resumed at batch `start` sees what the uninterrupted run saw.
    `augment` is an augment.AugmentationPipeline (float32 batches in [0, 255]). `sampler="pk"`
    makes every batch batch_size // K identities × K images (triplet losses need it; config.validate
    checks that K divides the batch).
    """
    first_epoch, offset = divmod(start, steps_per_epoch)
    epochs_left = [epoch_batches(folder, batch_size, epoch_seed(seed, epoch), shuffle_buffer, sampler,
                                 images_per_identity).take(steps_per_epoch) for epoch in range(first_epoch, epochs)]
    if not epochs_left:
        raise ValueError(f"batch {start} is past the end of {epochs} epochs of {steps_per_epoch} batches")
    encoded = functools.reduce(tf.data.Dataset.concatenate, epochs_left).skip(offset)
    keyed = encoded.map(lambda b, labels: (b, labels, tf.fill(tf.shape(labels), batch_key(b))))
    images = keyed.unbatch().map(lambda b, label, key: (decode_image(b, image_size), label, key),
                                 num_parallel_calls=tf.data.AUTOTUNE)
    batches = images.batch(batch_size, drop_remainder=True)
    if augment is not None:
        batches = batches.map(lambda images, labels, keys: (augment(images, seed=(seed, keys[0])), labels, keys),
                              num_parallel_calls=tf.data.AUTOTUNE)
    batches = batches.map(lambda images, labels, keys: ((scale(images), labels), labels))
    return batches.prefetch(tf.data.AUTOTUNE)
