"""Augmentations: shape, dtype and range kept, repeatable under a seed, per-image probability."""
import importlib.util

import cv2
import numpy as np
import pytest
import tensorflow as tf

from arcface_keras.augment import build_augmentation, color_transform
from arcface_keras.registry import AUGMENTATIONS

NAMES = ["flip", "random_crop", "center_crop", "color_jitter", "variety", "random_erasing", "gaussian_blur",
         "grayscale", "low_resolution"]


@pytest.fixture(scope="module")
def batch():
    images = np.random.default_rng(0).uniform(0, 255, (6, 16, 16, 3)).astype("float32")
    images[0] = 255.0  # extremes must stay in range
    images[1, :, :8] = 0.0
    return images


def test_all_augmentations_are_registered():
    assert set(NAMES) <= set(AUGMENTATIONS.names())


@pytest.mark.parametrize("name", NAMES)
def test_augmentation_contract(name, batch):
    out = build_augmentation([{"type": name, "p": 1.0}], seed=3)(batch)
    in_tf_data = tf.data.Dataset.from_tensors(batch).map(build_augmentation([{"type": name, "p": 1.0}], seed=3))
    again = next(iter(in_tf_data))
    assert out.shape == batch.shape and out.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0
    # same seed and input, same output, eager or in tf.data (graph kernels may differ in the last bit)
    np.testing.assert_allclose(out.numpy(), again.numpy(), atol=1e-3)
    assert np.abs(out.numpy() - batch)[2:].max(axis=(1, 2, 3)).min() > 0  # every textured image changed
    for p in (0.0, 1e-9):  # never chosen: the input comes back as it was
        untouched = build_augmentation([{"type": name, "p": p}], seed=3)(batch)
        np.testing.assert_array_equal(untouched.numpy(), batch)


@pytest.mark.parametrize("name", NAMES)
def test_probability_is_drawn_per_image(name, batch):
    images = np.concatenate([batch[2:]] * 4)  # 16 textured images
    out = build_augmentation([{"type": name, "p": 0.5}], seed=5)(images).numpy()
    kept = [np.array_equal(o, i) for o, i in zip(out, images)]
    assert 0 < sum(kept) < len(images)
    assert 0.0 <= out.min() and out.max() <= 255.0
    if name == "flip":
        assert all(k or np.array_equal(o, i[:, ::-1]) for k, o, i in zip(kept, out, images))


def test_color_transform_parameters(batch):
    def color(shift=0.0, contrast=1.0, saturation=1.0, turns=0.0):
        values = [tf.fill([len(batch)], float(v)) for v in (shift, contrast, saturation, turns)]
        return color_transform(tf.constant(batch), *values).numpy()

    np.testing.assert_allclose(color(), batch, atol=1e-3)
    np.testing.assert_allclose(color(turns=1.0), batch, atol=1e-2)  # a full turn of the hue
    np.testing.assert_allclose(color(shift=10.0), batch + 10.0, atol=1e-3)
    grey = color(saturation=0.0)
    np.testing.assert_allclose(grey[..., 0], grey[..., 2], atol=1e-3)
    flat = color(contrast=0.0)
    np.testing.assert_allclose(flat, flat[:, :1, :1].repeat(16, 1).repeat(16, 2), atol=1e-3)


def test_bad_specs_fail_clearly():
    with pytest.raises(KeyError, match="unknown augmentation 'fliip'; did you mean 'flip'"):
        build_augmentation(["fliip"])
    with pytest.raises(ValueError, match=r"got p=1.5: expected float in \[0, 1\] \(a probability\)"):
        build_augmentation([{"type": "grayscale", "p": 1.5}])
    with pytest.raises(TypeError, match="unknown keyword 'strength'"):
        build_augmentation([{"type": "variety", "strength": 2}])


def load_preview(repo_root):
    spec = importlib.util.spec_from_file_location("preview_augment", repo_root / "tools" / "preview_augment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_preview_augment_writes_png(tmp_path, repo_root, capsys):
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    (tmp_path / "exp.py").write_text("from arcface_keras.config import Data, Experiment\n"
                                     "experiment = Experiment(data=Data(augment=['flip', 'grayscale']))\n")
    tool = load_preview(repo_root)
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--help"])
    assert exit_info.value.code == 0
    tool.main(["--images", str(tmp_path), "--augment", '["flip", {"type": "color_jitter", "p": 0.5}]',
               "--out", str(tmp_path / "grid.png"), "--rows", "2", "--size", "24"])
    tool.main(["--images", str(tmp_path / "0.jpg"), "--experiment", str(tmp_path / "exp.py"),
               "--out", str(tmp_path / "exp.png"), "--size", "24"])
    assert "4 columns (original, flip (p=1), grayscale (p=1), pipeline)" in capsys.readouterr().out
    for name in ("grid.png", "exp.png"):
        image = cv2.imread(str(tmp_path / name))
        assert image is not None and image.shape[0] > 24 and image.shape[1] > 24 * 4
