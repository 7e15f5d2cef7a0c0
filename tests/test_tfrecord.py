"""TFRecord conversion: merged label spaces, byte-identical images, skipped files, verification."""
import csv
import gc
import importlib.util
import json
import os

import cv2
import numpy as np
import pytest

from arcface_keras.data.sources import read_list
from arcface_keras.data.tfrecord import ShardError, read_examples, read_manifest, verify, write_shards

TRUNCATED_JPEG = "truncated JPEG (the data ends before its end-of-image marker)"


def load_tool(repo_root):
    spec = importlib.util.spec_from_file_location("make_tfrecord", repo_root / "tools" / "make_tfrecord.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_identities(root, identities, per_identity, rng):
    """Tiny JPEG files root/<identity>/<k>.jpg; returns {file bytes: identity}."""
    written = {}
    for identity in identities:
        (root / identity).mkdir(parents=True)
        for k in range(per_identity):
            data = cv2.imencode(".jpg", rng.integers(0, 255, (12, 12, 3), dtype=np.uint8))[1].tobytes()
            (root / identity / f"{k}.jpg").write_bytes(data)
            written[data] = identity
    return written


def read_back(folder):
    return [(image.numpy(), int(label)) for image, label in read_examples(folder)]


@pytest.fixture
def two_sources(tmp_path):
    rng = np.random.default_rng(0)
    first = write_identities(tmp_path / "ms1m", ["id0", "id1", "id2"], 3, rng)
    second = write_identities(tmp_path / "kface", ["id0", "p7"], 2, rng)  # "id0" is in both sources
    (tmp_path / "kface" / "p7" / "empty.jpg").write_bytes(b"")
    (tmp_path / "kface" / "p7" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    bmp = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "kface" / "p7" / "other.bmp"), bmp)
    return tmp_path, first, second


def test_merge_offsets_labels_and_keeps_bytes(two_sources, repo_root, capsys):
    tmp_path, first, second = two_sources
    out = tmp_path / "merged"
    tool = load_tool(repo_root)
    tool.main(["--source", str(tmp_path / "ms1m"), "--source", str(tmp_path / "kface"), "--out", str(out),
               "--shards", "3", "--workers", "2", "--verify", "--quiet"])
    assert "verified 3 shards" in capsys.readouterr().out

    manifest = read_manifest(out)
    assert manifest["num_classes"] == 5
    assert manifest["class_names"] == ["ms1m/id0", "ms1m/id1", "ms1m/id2", "kface/id0", "kface/p7"]
    assert [(s["kind"], s["label_offset"], s["num_classes"], s["num_images"]) for s in manifest["sources"]] == [
        ("folder", 0, 3, 9), ("folder", 3, 2, 5)]
    assert manifest["num_images"] == 14 == sum(manifest["shards"].values())
    assert manifest["skipped"] == 2

    records = read_back(out)
    assert len(records) == 14
    expected = {data: ["id0", "id1", "id2"].index(name) for data, name in first.items()}
    expected.update({data: 3 + ["id0", "p7"].index(name) for data, name in second.items()})
    jpegs = {data: label for data, label in records if data in expected}
    assert jpegs == expected  # byte-identical, labels of the second source offset by 3
    (bmp_as_jpeg, bmp_label), = [(d, label) for d, label in records if d not in expected]
    assert bmp_as_jpeg[:3] == b"\xff\xd8\xff" and bmp_label == 4  # non-JPEG/PNG sources are re-encoded

    with open(out / "skipped.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((os.path.basename(r["item"]), r["reason"]) for r in rows) == [
        ("broken.jpg", TRUNCATED_JPEG), ("empty.jpg", "empty file")]  # its first segment runs past the end


def test_identities_without_a_usable_image_get_no_label(tmp_path, repo_root, capsys):
    rng = np.random.default_rng(1)
    written = write_identities(tmp_path / "faces", ["anna", "carl"], 3, rng)
    (tmp_path / "faces" / "bert").mkdir()  # empty
    (tmp_path / "faces" / "dora").mkdir()
    (tmp_path / "faces" / "dora" / "notes.txt").write_text("no images here")
    (tmp_path / "faces" / "emil").mkdir()  # only an image that does not decode
    (tmp_path / "faces" / "emil" / "0.jpg").write_bytes(b"neither a JPEG nor any other image")
    whole = (tmp_path / "faces" / "anna" / "0.jpg").read_bytes()  # tf.io.decode_jpeg would stop training on it
    (tmp_path / "faces" / "anna" / "cut.jpg").write_bytes(whole[:-1])
    out = tmp_path / "out"
    load_tool(repo_root).main(["--source", str(tmp_path / "faces"), "--out", str(out),
                                                "--shards", "2", "--verify", "--quiet"])
    printed = capsys.readouterr().out
    assert "wrote 6 images of 2 classes" in printed and "3 identities with no usable image" in printed

    manifest = read_manifest(out)
    assert manifest["class_names"] == ["anna", "carl"] and manifest["num_classes"] == 2
    assert manifest["sources"][0]["num_classes"] == 2 and manifest["empty_identities"] == 3
    expected = {data: ["anna", "carl"].index(name) for data, name in written.items()}
    assert dict(read_back(out)) == expected  # labels dense: carl is 1, not 2 or 4
    with open(out / "skipped.csv") as f:
        rows = {(os.path.basename(r["item"]), r["reason"]) for r in csv.DictReader(f)}
    assert rows == {("bert", "no image files"), ("dora", "no image files"), ("emil", "no usable image"),
                    ("0.jpg", "not a decodable image"), ("cut.jpg", TRUNCATED_JPEG)}


def test_a_conversion_that_writes_nothing_fails(tmp_path, repo_root):
    for identity in ("emil", "fritz"):
        (tmp_path / "faces" / identity).mkdir(parents=True)
        (tmp_path / "faces" / identity / "0.jpg").write_bytes(b"")
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="no usable image in .*faces") as exit_info:
        load_tool(repo_root).main(["--source", str(tmp_path / "faces"), "--out", str(out), "--quiet"])
    assert exit_info.value.code not in (0, None)
    assert sorted(p.name for p in out.iterdir()) == ["skipped.csv"]  # no manifest, no empty shards


def test_verify_names_truncated_shard(two_sources, repo_root):
    tmp_path, _, _ = two_sources
    out = tmp_path / "set"
    tool = load_tool(repo_root)
    tool.main(["--source", str(tmp_path / "ms1m"), "--out", str(out), "--shards", "2", "--quiet"])
    assert verify(out)["num_images"] == 9

    shard = sorted(out.glob("*.tfrecord"))[1]
    os.truncate(shard, shard.stat().st_size - 5)
    with pytest.raises(ShardError, match=f"{shard.name}: corrupt or truncated"):
        verify(out)
    with pytest.raises(SystemExit, match=shard.name):
        tool.main(["--out", str(out), "--verify"])
    gc.collect()  # the reading iterators the errors hold, freed before they sit idle (test_resume.exit_code_in_process)


def test_verify_checks_counts_and_labels(tmp_path):
    examples = [(b"x%d" % i, i % 3) for i in range(7)]
    write_shards(examples, tmp_path, 2, {"num_classes": 3})
    manifest_path = tmp_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert sorted(read_back(tmp_path), key=lambda r: r[0]) == sorted(examples)

    manifest["num_classes"] = 2
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="train-00000-of-00002.tfrecord: label 2 outside"):
        verify(tmp_path)
    manifest["num_classes"], manifest["shards"]["train-00001-of-00002.tfrecord"] = 3, 4
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="manifest.json: num_images 7 is not the sum"):
        verify(tmp_path)
    manifest["num_images"] = 8
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="train-00001-of-00002.tfrecord: 3 examples, the manifest says 4"):
        verify(tmp_path)


def test_list_files_and_worker_count_do_not_change_output(two_sources, repo_root):
    tmp_path, _, _ = two_sources
    listed = sorted((tmp_path / "ms1m").rglob("*.jpg"))[:5]  # id0 ×3, id1 ×2
    lines = [f"{p.relative_to(tmp_path / 'ms1m')}\tperson_{p.parent.name}" for p in listed]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    tool = load_tool(repo_root)
    for workers in (1, 2):
        tool.main(["--list", str(tmp_path / "train.txt"), "--list-root", str(tmp_path / "ms1m"),
                   "--source", str(tmp_path / "kface"), "--out", str(tmp_path / f"w{workers}"),
                   "--shards", "3", "--workers", str(workers), "--quiet"])
    manifest = read_manifest(tmp_path / "w1")
    assert manifest["class_names"] == ["person_id0", "person_id1", "id0", "p7"]  # no collision: no prefix
    assert [s["label_offset"] for s in manifest["sources"]] == [0, 2]
    expected = {p.read_bytes(): ["id0", "id1"].index(p.parent.name) for p in listed}
    assert {data: label for data, label in read_back(tmp_path / "w1") if data in expected} == expected
    for shard in manifest["shards"]:
        assert (tmp_path / "w1" / shard).read_bytes() == (tmp_path / "w2" / shard).read_bytes()


def test_list_file_errors_name_the_line(tmp_path):
    (tmp_path / "bad.txt").write_text("a/1.jpg\tperson\nno_tab_here\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 'relative_path<TAB>identity'"):
        read_list(tmp_path / "bad.txt")


def test_reencode_quality_rewrites_jpegs(two_sources, repo_root):
    tmp_path, first, _ = two_sources
    out = tmp_path / "q50"
    load_tool(repo_root).main(["--source", str(tmp_path / "ms1m"), "--out", str(out), "--shards", "1",
                               "--reencode-quality", "50", "--quiet"])
    records = read_back(out)
    assert len(records) == 9 and not any(data in first for data, _ in records)
    decoded = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for data, _ in records]
    assert all(image.shape == (12, 12, 3) for image in decoded)


def test_tool_help_and_one_line_errors(tmp_path, repo_root, capsys):
    tool = load_tool(repo_root)
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--help"])
    assert exit_info.value.code == 0 and "--list-root" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=f"make_tfrecord: {tmp_path / 'nowhere'}: not a directory"):
        tool.main(["--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])


# ---------------------------------------------------------------- degenerate training sets


def test_one_identity_is_refused_before_anything_is_written(tmp_path, repo_root):
    faces = tmp_path / "faces"
    write_identities(faces, ["solo"], 3, np.random.default_rng(2))
    with pytest.raises(SystemExit, match=f"make_tfrecord: {faces}: found 1 identity, training needs at least 2") as exit_info:
        load_tool(repo_root).main(["--source", str(faces), "--out", str(tmp_path / "out"), "--quiet"])
    assert exit_info.value.code not in (0, None) and not (tmp_path / "out").exists()

    from tools import run as run_tool  # as data.train: refused when it is converted, before a run directory

    with pytest.raises(SystemExit) as exit_info:
        run_tool.main([str(repo_root / "experiments/demo_synth_mfn_arc.py"), "--set", "data.synthetic={}",
                       "--set", f"data.train={faces}", "--set", f"data.cache_dir={tmp_path / 'cache'}",
                       "--set", "log.wandb=disabled", "--work-dir", str(tmp_path / "runs")])
    assert exit_info.value.code == f"error: data.train='{faces}': {faces}: found 1 identity, training needs at least 2"
    assert not (tmp_path / "runs").exists()


def test_load_refuses_one_class_or_labels_beyond_the_classes(two_sources, repo_root):
    from arcface_keras.config import ConfigError, Data, Experiment, validate
    from arcface_keras.data.prepare import training_folder

    tmp_path, _, _ = two_sources
    out = tmp_path / "set"
    load_tool(repo_root).main(["--source", str(tmp_path / "ms1m"), "--out", str(out), "--shards", "2", "--quiet"])
    manifest = read_manifest(out)
    assert manifest["max_label"] == 2 and manifest["num_classes"] == 3
    experiment = Experiment(data=Data(train=str(out), cache_dir=str(tmp_path / "cache")))
    validate(experiment)

    def refused(edited, message, check=validate):
        (out / "manifest.json").write_text(json.dumps(edited))
        with pytest.raises(ConfigError, match=f"^data.train='{out}': {message}") as err:
            check(experiment)
        assert "\n" not in str(err.value)

    refused({**manifest, "num_classes": 1}, r".*manifest.json holds 1 class\(es\); training needs at least 2 identities")
    refused({**manifest, "num_classes": 2}, r".*manifest.json has labels up to 2, not below its num_classes=2")
    older = {key: value for key, value in manifest.items() if key != "max_label"}  # no max_label: the shards are read
    refused({**older, "num_classes": 2}, r".*tfrecord: label 2 outside \[0, 2\) of the manifest",
            check=lambda e: (validate(e), training_folder(e.data)))
    (out / "manifest.json").write_text(json.dumps(older))
    assert training_folder(experiment.data) == out
    assert len(list((tmp_path / "cache" / "verified").iterdir())) == 1  # read once, remembered
