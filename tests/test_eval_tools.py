"""tools/make_pairs, make_bin, eval and export on a tiny embedder and a generated face folder."""
import importlib.util
import json
import pickle

import cv2
import numpy as np
import pytest

from arcface_keras.data.verification import load_bin, load_pairs, read_bin, write_bin


def load_tool(repo_root, name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", repo_root / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_faces(root, identities=20, per_identity=3, size=20):
    """Identity folders of small JPEGs; images of one identity share a base pattern."""
    rng = np.random.default_rng(0)
    for i in range(identities):
        base = rng.integers(0, 256, (size, size, 3))
        (root / f"id{i:03d}").mkdir(parents=True)
        for n in range(per_identity):
            image = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / f"id{i:03d}" / f"face{n}.jpg"), image)
    return root


@pytest.fixture(scope="module")
def embedder_path(tmp_path_factory):
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(160)(x))  # 1,280 weights: dynamic-range int8 quantises them
    path = tmp_path_factory.mktemp("model") / "embedder.keras"
    model.save(path)
    return path


def test_make_pairs_then_make_bin_keep_the_original_bytes(repo_root, tmp_path, capsys):
    faces = write_faces(tmp_path / "faces")
    pairs = load_tool(repo_root, "make_pairs").main([str(faces), "--pairs", "40", "--seed", "3"])
    assert pairs == faces / "pairs.txt" and pairs.read_text().startswith("10\t2\n")
    out = load_tool(repo_root, "make_bin").main(["--pairs", str(pairs), "--out", str(tmp_path / "faces.bin")])
    bins, issame = read_bin(out)
    lines = pairs.read_text().splitlines()[1:]
    first = lines[0].split()  # a same pair: name n1 n2, numbers of sorted images
    assert bins[0] == (faces / first[0] / f"face{int(first[1]) - 1}.jpg").read_bytes()
    assert issame.tolist() == [len(line.split()) == 3 for line in lines]
    images, pair_issame = load_pairs(pairs)
    bin_images, bin_issame = load_bin(out)
    np.testing.assert_array_equal(bin_images, images)
    assert bin_issame.tolist() == pair_issame.tolist()
    with open(out, "rb") as file:  # plain pickle as insightface reads it
        plain_bins, plain_issame = pickle.load(file, encoding="bytes")
    assert plain_bins == bins and plain_issame == issame.tolist()
    assert "wrote" in capsys.readouterr().out


def test_eval_writes_table_json_and_roc_plot(repo_root, embedder_path, tmp_path, capsys):
    faces = write_faces(tmp_path / "faces")
    load_tool(repo_root, "make_pairs").main([str(faces), "--pairs", "40"])
    load_tool(repo_root, "make_bin").main(["--pairs", str(faces / "pairs.txt"), "--out", str(tmp_path / "faces.bin")])
    others = write_faces(tmp_path / "others")  # no pairs.txt: pairs are generated
    bins, issame = read_bin(tmp_path / "faces.bin")
    write_bin(tmp_path / "damaged.bin", [bins[0][:len(bins[0]) // 2], *bins[1:]], issame)  # first image cut short
    out = tmp_path / "report" / "report.json"
    evaluate = load_tool(repo_root, "eval").main
    sets = ["--bin", str(tmp_path / "faces.bin"), "--pairs", str(faces / "pairs.txt"), "--folder", str(others),
            "--folder-pairs", "60", "--bin", str(tmp_path / "damaged.bin")]
    with pytest.raises(SystemExit, match=r"^error: .*missing.bin: no such .bin file$"):  # before the model loads
        evaluate(["--model", str(embedder_path), *sets, "--bin", str(tmp_path / "missing.bin"), "--out", str(out)])
    assert not out.parent.exists()
    with pytest.raises(SystemExit, match=r"^error: --out .*faces.bin/r.json: .*faces.bin is a file, not a folder$"):
        evaluate(["--model", str(embedder_path), *sets, "--out", str(tmp_path / "faces.bin" / "r.json")])
    with pytest.raises(SystemExit) as exit_info:  # a set that does not decode is skipped and reported
        evaluate(["--model", str(embedder_path), *sets, "--out", str(out), "--batch-size", "16"])
    assert exit_info.value.code == 1
    table = capsys.readouterr().out
    assert "accuracy ± std" in table and "TAR@1e-1" in table
    for name in ("faces", "faces_2", "others", "damaged"):
        assert f"\n{name} " in table
    report = json.loads(out.read_text())
    faces_bin, faces_pairs, generated = (report["sets"][n] for n in ("faces", "faces_2", "others"))
    assert "damaged.bin: image 0: truncated JPEG" in report["sets"]["damaged"]["error"]
    assert faces_bin["num_pairs"] == 40 and generated["num_pairs"] == 60
    assert "roc" not in faces_bin and "tar@far=1e-1" in faces_bin and "tar@far=1e-2" not in faces_bin
    for key in ("accuracy", "std", "threshold", "auc", "eer", "tar@far=1e-1"):
        assert faces_bin[key] == faces_pairs[key]  # the .bin holds exactly the folder's images
    assert 0.0 <= generated["accuracy"] <= 1.0 and 0.0 <= generated["auc"] <= 1.0
    assert report["flip"] is True
    png = out.with_name("report_roc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cv2.imread(str(png)).shape[0] > 100

    no_flip = evaluate(["--model", str(embedder_path), "--folder", str(faces), "--out", str(tmp_path / "nf.json"), "--no-flip"])
    assert no_flip["flip"] is False and no_flip["sets"]["faces"]["num_pairs"] == 40


def test_verify_checks_its_inputs_before_loading_the_model(repo_root, tmp_path, capsys):
    verify = load_tool(repo_root, "verify").main
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))[1].tobytes())
    not_a_model = tmp_path / "model.keras"
    not_a_model.write_text("loading this would fail differently")
    with pytest.raises(SystemExit, match=r"^error: .*missing.keras: no such model file$"):
        verify([str(photo), str(photo), "--model", str(tmp_path / "missing.keras")])
    with pytest.raises(SystemExit, match=r"^error: .*gone.jpg: No such file or directory$"):
        verify([str(photo), str(tmp_path / "gone.jpg"), "--model", str(not_a_model)])
    (tmp_path / "cut.jpg").write_bytes(photo.read_bytes()[:-20])
    with pytest.raises(SystemExit, match=r"^error: .*cut.jpg: not a readable image \(truncated JPEG"):
        verify([str(tmp_path / "cut.jpg"), str(photo), "--model", str(not_a_model)])
    for threshold in ("1.5", "-1.01", "nan"):
        with pytest.raises(SystemExit) as exit_info:
            verify([str(photo), str(photo), "--model", str(not_a_model), "--threshold", threshold])
        assert exit_info.value.code == 2 and "a cosine similarity lies in [-1, 1]" in capsys.readouterr().err


def test_export_every_format_matches_keras(repo_root, embedder_path, tmp_path, capsys):
    tool = load_tool(repo_root, "export")
    formats = [("savedmodel", "saved"), ("tflite", "m.tflite"), ("tflite-int8", "m8.tflite"), ("onnx", "m.onnx")]
    missing = tool.missing_onnx_package()
    if missing:  # ONNX is optional: without its packages the format fails with a message naming them
        with pytest.raises(SystemExit, match=f"needs the {missing} package"):
            tool.main(["--model", str(embedder_path), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
        formats.pop()
    differences = {}
    for fmt, name in formats:
        differences[fmt] = tool.main(["--model", str(embedder_path), "--format", fmt, "--out", str(tmp_path / name)])
        assert (tmp_path / name).exists()
        assert "max |difference|" in capsys.readouterr().out
    for fmt, difference in differences.items():
        assert difference <= (0.1 if fmt == "tflite-int8" else 1e-4)
    assert (tmp_path / "m8.tflite").stat().st_size < (tmp_path / "m.tflite").stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(name for _, name in formats)  # no temporaries


def test_tools_have_help(repo_root, capsys):
    for name in ("make_pairs", "make_bin", "eval", "export"):
        with pytest.raises(SystemExit) as exit_info:
            load_tool(repo_root, name).main(["--help"])
        assert exit_info.value.code == 0
        assert "usage:" in capsys.readouterr().out
