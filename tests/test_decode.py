"""One decoder: the training pipeline and the evaluation loaders turn the same file into the same model input."""
import cv2
import numpy as np
import pytest
import tensorflow as tf

from arcface_keras.data.pipeline import scale, train_dataset
from arcface_keras.data.synthetic import render_identity_image
from arcface_keras.data.tfrecord import write_shards
from arcface_keras.data.verification import load_pairs


def jpeg(image_rgb, quality):
    return cv2.imencode(".jpg", image_rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def photo_like(size=112):
    """A synthetic face: gradients, edges, lighting and sensor noise, as a camera crop has."""
    face = render_identity_image(0, 3, 1)
    return face if size == 112 else cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)


def noise(size=112):
    return np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)


def training_input(data, folder, image_size=112):
    """What the model is fed in training for these bytes (no augmentation)."""
    write_shards([(data, 0)], folder, 1, {"num_classes": 1})
    (images, _), _ = next(iter(train_dataset(folder, 1, image_size, steps_per_epoch=1, epochs=1, shuffle_buffer=1)))
    return images.numpy()[0]


def evaluation_images(data, folder):
    """The same bytes as an evaluation set reads them (pairs.txt over an identity folder)."""
    (folder / "a").mkdir(parents=True)
    for n in (1, 2):
        (folder / "a" / f"a_{n:04d}.jpg").write_bytes(data)
    (folder / "pairs.txt").write_text("a 1 2\n")
    images, _ = load_pairs(folder / "pairs.txt")
    return images


@pytest.mark.parametrize("make, quality", [(photo_like, 90), (photo_like, 75), (noise, 95), (noise, 100)])
def test_training_and_evaluation_decode_a_jpeg_to_the_same_pixels(tmp_path, make, quality):
    data = jpeg(make(), quality)
    train = training_input(data, tmp_path / "records")
    evaluation = evaluation_images(data, tmp_path / "faces")
    np.testing.assert_array_equal(train, scale(evaluation[0].astype(np.float32)))  # exact: same decoder, same op


@pytest.mark.parametrize("make", [photo_like, noise])
def test_training_and_evaluation_resize_alike(tmp_path, make):
    from arcface_keras.evaluation.embed import model_inputs

    data = jpeg(make(150), 90)
    train = training_input(data, tmp_path / "records")
    evaluation = model_inputs(evaluation_images(data, tmp_path / "faces"), (112, 112))
    np.testing.assert_array_equal(train, evaluation[0])  # the same area resize on the same float pixels


def test_jpegs_decode_as_libjpeg_does_with_its_accurate_dct(tmp_path):
    from arcface_keras.data.decode import decode_rgb

    for data in (jpeg(photo_like(), 95), jpeg(noise(), 100)):
        expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
        np.testing.assert_array_equal(decode_rgb(data, "test"), expected)  # libjpeg's default: islow DCT
        fast = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_FAST").numpy()
        assert np.abs(fast.astype(int) - expected).max() > 0  # the other DCT differs: the check can fail


def test_a_jpeg_or_png_cut_short_is_unreadable_whatever_the_decoder():
    """Decoders differ on a file cut short (OpenCV's imread fills the missing rows with grey; TensorFlow
    decodes some JPEGs without their last byte, not others): the one decoder refuses every cut JPEG and
    PNG before decoding, with the same message whatever the decoder's version."""
    from arcface_keras.data.decode import decode_rgb
    from arcface_keras.data.integrity import truncation

    data, png = jpeg(photo_like(), 90), cv2.imencode(".png", photo_like())[1].tobytes()
    for cut in (data[:-1], data[:-2], data[:len(data) // 2], png[:-12], png[:len(png) // 2]):
        with pytest.raises(ValueError, match="^a.jpg: truncated (JPEG|PNG)"):
            decode_rgb(cut, "a.jpg")
    # bytes after the end (padding, a phone's appended data) are allowed; a thumbnail's end marker is no end
    thumbnail = jpeg(cv2.resize(photo_like(), (16, 16)), 90)
    exif = b"\xff\xe1" + (len(thumbnail) + 8).to_bytes(2, "big") + b"Exif\0\0" + thumbnail
    with_thumbnail = data[:2] + exif + data[2:]
    for whole in (data + b"\0" * 64, data + b"appended", with_thumbnail, png + b"\0" * 8):
        assert truncation(whole) is None
    assert truncation(with_thumbnail[:-100]) is not None
    np.testing.assert_array_equal(decode_rgb(with_thumbnail, "thumbnail"), decode_rgb(data, "plain"))
