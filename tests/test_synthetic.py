"""Synthetic identities: deterministic pixels, identity folders, resumable writes, a task that needs learning."""
import json

import cv2
import numpy as np
import pytest

from arcface_keras.data import synthetic
from arcface_keras.data.folders import list_identity_folder
from arcface_keras.data.synthetic import (
    ensure_synthetic,
    raw_pixel_accuracy,
    render_identities,
    render_identity_image,
    write_identities,
)
from tools import make_synthetic


def test_render_is_deterministic_and_seeded():
    image = render_identity_image(0, 3, 2)
    assert image.dtype == np.uint8 and image.shape == (112, 112, 3)
    assert np.array_equal(image, render_identity_image(0, 3, 2))
    assert not np.array_equal(image, render_identity_image(1, 3, 2))  # another seed
    assert not np.array_equal(image, render_identity_image(0, 4, 2))  # another identity
    assert not np.array_equal(image, render_identity_image(0, 3, 3))  # another image of the same identity


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="identity=-1"):
        render_identity_image(0, -1, 0)
    with pytest.raises(ValueError, match="image='0': expected an integer"):
        render_identity_image(0, 0, "0")
    with pytest.raises(ValueError, match="identities=0: expected an integer >= 1"):
        write_identities(tmp_path, 0, 3)


def test_identities_do_not_depend_on_the_range_generated(tmp_path):
    write_identities(tmp_path / "all", 4, 2, seed=5)
    write_identities(tmp_path / "tail", 2, 2, seed=5, first_identity=2)
    for name in ("id_00002", "id_00003"):
        for image in ("0000.jpg", "0001.jpg"):
            assert (tmp_path / "all" / name / image).read_bytes() == (tmp_path / "tail" / name / image).read_bytes()
    assert sorted(p.name for p in (tmp_path / "tail").iterdir() if p.is_dir()) == ["id_00002", "id_00003"]


def test_layout_is_an_identity_folder_of_rgb_jpegs(tmp_path):
    out = write_identities(tmp_path / "syn", 3, 4, seed=0, first_identity=7)
    paths, labels, names, empty = list_identity_folder(out)
    assert empty == []
    assert names == ["id_00007", "id_00008", "id_00009"]
    assert labels == [0] * 4 + [1] * 4 + [2] * 4
    assert [p.split("/")[-1] for p in paths[:4]] == ["0000.jpg", "0001.jpg", "0002.jpg", "0003.jpg"]
    decoded = cv2.imread(paths[5])[..., ::-1]
    assert decoded.shape == (112, 112, 3)
    original = render_identity_image(0, 8, 1)  # paths[5] is identity 8, image 1
    assert np.abs(decoded.astype(int) - original).mean() < 4  # JPEG, RGB order kept
    manifest = json.loads((out / "synthetic.json").read_text())
    assert manifest["seed"] == 0 and manifest["first_identity"] == 7 and manifest["identities"] == 3
    assert not list(out.rglob(".*"))  # no temporary files left behind


def test_write_resumes_and_keeps_valid_images(tmp_path):
    out = write_identities(tmp_path / "syn", 2, 3, seed=0)
    kept, deleted, corrupt = out / "id_00000" / "0000.jpg", out / "id_00001" / "0002.jpg", out / "id_00001" / "0001.jpg"
    original = deleted.read_bytes()
    deleted.unlink()
    corrupt.write_bytes(b"not a jpeg")
    (out / "synthetic.json").unlink()  # as after an interruption
    before = kept.stat().st_mtime_ns
    write_identities(out, 2, 3, seed=0)
    assert deleted.read_bytes() == original
    assert cv2.imread(str(corrupt)) is not None
    assert kept.stat().st_mtime_ns == before
    assert (out / "synthetic.json").exists()


def test_write_refuses_a_folder_of_another_seed(tmp_path):
    write_identities(tmp_path / "syn", 1, 1, seed=0)
    with pytest.raises(ValueError, match="seed 0 .* not seed 1"):
        write_identities(tmp_path / "syn", 1, 1, seed=1)


def test_ensure_synthetic_caches_by_parameters(tmp_path):
    folder = ensure_synthetic(tmp_path, 2, 2, seed=0)
    image = folder / "id_00001" / "0001.jpg"
    before = image.stat().st_mtime_ns
    assert ensure_synthetic(tmp_path, 2, 2, seed=0) == folder
    assert image.stat().st_mtime_ns == before  # complete: not regenerated
    held_out = ensure_synthetic(tmp_path, 2, 2, seed=0, first_identity=2)
    assert held_out != folder and (held_out / "id_00003").is_dir()
    (folder / "synthetic.json").unlink()
    image.unlink()
    assert ensure_synthetic(tmp_path, 2, 2, seed=0) == folder and image.exists()  # incomplete: finished


def test_workers_write_the_same_bytes(tmp_path):
    write_identities(tmp_path / "one", 2, 2, seed=1)
    write_identities(tmp_path / "two", 2, 2, seed=1, workers=2)
    for path in (tmp_path / "one").rglob("*.jpg"):
        assert path.read_bytes() == (tmp_path / "two" / path.relative_to(tmp_path / "one")).read_bytes()


def test_raw_pixels_do_not_solve_held_out_verification():
    images, labels = render_identities(0, 40, 10, first_identity=1000)
    result = raw_pixel_accuracy(images, labels, pairs=1000)
    assert 0.5 <= result["accuracy"] <= 0.75


def test_verification_pairs_are_balanced_and_valid():
    labels = np.repeat(np.arange(5), 3)
    first, second, issame = synthetic.verification_pairs(labels, 100, seed=1)
    assert issame.sum() == 50 and np.all(first != second)
    assert np.array_equal(labels[first] == labels[second], issame)
    assert np.array_equal(first, synthetic.verification_pairs(labels, 100, seed=1)[0])


def test_cli_writes_a_folder(tmp_path, capsys):
    out = make_synthetic.main([str(tmp_path / "cli"), "--identities", "2", "--images", "3", "--seed", "4",
                               "--first-identity", "10", "--workers", "1"])
    assert sorted(p.name for p in out.iterdir()) == ["id_00010", "id_00011", "synthetic.json"]
    assert len(list(out.rglob("*.jpg"))) == 6
    assert "id_00010..id_00011, 6 images" in capsys.readouterr().out


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        make_synthetic.main(["--help"])
    assert exit_info.value.code == 0
    assert "--first-identity" in capsys.readouterr().out
