"""The training input pipeline: TFRecord shards → decode → augment → scale to [-1, 1] → batches."""
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
    groups = groups.shuffle(1024, seed=seed).batch(identities_per_batch, drop_remainder=True)
    return groups.map(lambda images, labels: (tf.reshape(images, [-1]), tf.reshape(labels, [-1])))


def train_dataset(folder, batch_size, image_size, augment=None, shuffle_buffer=20000, seed=0,
                  sampler="random", images_per_identity=4):
    """An endless dataset of ((images, labels), labels) batches for `model.fit`.

    `augment` is a callable on float32 batches in [0, 255] (see augment.build_augmentation).
    `sampler="pk"` makes every batch batch_size // K identities × K images (triplet losses need it).
    """
    examples = read_examples(folder, shuffle_shards=True, seed=seed)
    examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    if sampler == "pk":
        if batch_size % images_per_identity:
            raise ValueError(f"data.sampler='pk': batch_size {batch_size} is not a multiple of "
                             f"data.images_per_identity {images_per_identity}")
        batches = pk_batches(examples, batch_size // images_per_identity, images_per_identity, seed)
        batches = batches.map(
            lambda images, labels: (tf.map_fn(lambda b: decode_image(b, image_size), images,
                                              fn_output_signature=tf.float32), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    elif sampler == "random":
        images = examples.map(lambda b, label: (decode_image(b, image_size), label),
                              num_parallel_calls=tf.data.AUTOTUNE)
        batches = images.batch(batch_size, drop_remainder=True)
    else:
        raise ValueError(f"data.sampler={sampler!r}: expected 'random' or 'pk'")
    if augment is not None:
        batches = batches.map(lambda images, labels: (augment(images), labels), num_parallel_calls=tf.data.AUTOTUNE)
    batches = batches.map(lambda images, labels: ((scale(images), labels), labels))
    return batches.prefetch(tf.data.AUTOTUNE)
