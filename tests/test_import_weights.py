"""arcface_torch IResNet weights (torch zip state dict, ONNX with BN kept or folded) → our backbone,
compared with onnxruntime running the same graph. No PyTorch needed (a torch test runs if installed)."""
import sys
import zipfile
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arcface_torch_files import onnxruntime_embeddings, random_state_dict, write_onnx, write_torch_zip  # noqa: E402

from arcface_keras.evaluation.verification import l2_normalize  # noqa: E402
from arcface_keras.pretrained.weights import import_backbone, read_weights  # noqa: E402
from arcface_keras.pretrained.torch_zip import UnsafeCheckpointError, read_state_dict  # noqa: E402

SIZE, BASE, EMBEDDING = 32, 4, 8  # IResNet-18 at 1/16 width: 32x32 input → 2x2 feature map
# Float32 through ~20 layers, two implementations summing in different orders: ~1e-6 on unit vectors.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("arcface_torch")
    state = random_state_dict(18, BASE, EMBEDDING, SIZE // 16, seed=1)
    write_torch_zip(folder / "backbone.pth", state)
    write_onnx(folder / "kept.onnx", state, SIZE)
    write_onnx(folder / "folded.onnx", state, SIZE, fold_bn=True)
    images = np.random.default_rng(2).uniform(-1, 1, (6, SIZE, SIZE, 3)).astype(np.float32)
    return folder, state, images


def reference(folder, images):
    """onnxruntime's normalised embeddings, plain and flip-summed."""
    plain = onnxruntime_embeddings(folder / "kept.onnx", images)
    flipped = onnxruntime_embeddings(folder / "kept.onnx", np.ascontiguousarray(images[:, :, ::-1]))
    return l2_normalize(plain), l2_normalize(plain + flipped)


def keras_embeddings(model, images):
    plain = np.asarray(model.predict_on_batch(images), np.float64)
    flipped = np.asarray(model.predict_on_batch(np.ascontiguousarray(images[:, :, ::-1])), np.float64)
    return l2_normalize(plain), l2_normalize(plain + flipped)


def test_folded_graph_matches_the_kept_one(files):
    folder, _, images = files
    kept = onnxruntime_embeddings(folder / "kept.onnx", images)
    folded = onnxruntime_embeddings(folder / "folded.onnx", images)
    assert np.abs(l2_normalize(kept) - l2_normalize(folded)).max() < TOLERANCE


@pytest.mark.parametrize("name", ["backbone.pth", "kept.onnx", "folded.onnx"])
def test_imported_backbone_matches_onnxruntime(files, name):
    folder, _, images = files
    model, _ = import_backbone(folder / name, "iresnet", input_size=(SIZE, SIZE), depth=18, embedding_size=EMBEDDING)
    assert model.name == "resnet18" and model.output_shape == (None, EMBEDDING)
    for ours, theirs in zip(keras_embeddings(model, images), reference(folder, images)):
        assert np.abs(ours - theirs).max() < TOLERANCE


def test_state_dicts_agree(files):
    folder, state, _ = files
    architecture, from_zip = read_weights(folder / "backbone.pth")
    assert architecture == "iresnet"
    assert set(from_zip) == set(state)
    assert all(np.array_equal(from_zip[k], state[k]) for k in state)
    architecture, from_onnx = read_weights(folder / "kept.onnx")
    assert architecture == "iresnet"
    assert set(from_onnx) == {k for k in state if not k.endswith("num_batches_tracked")}
    assert all(np.array_equal(from_onnx[k], state[k]) for k in from_onnx)


def test_keras_same_padding_would_be_wrong(files):
    """The strided convs need PyTorch's symmetric padding: the same weights under Keras' "same" differ."""
    folder, _, images = files
    from arcface_keras.backbones.resnet import iresnet

    imported, _ = import_backbone(folder / "backbone.pth", input_size=(SIZE, SIZE))
    same = iresnet(18, (SIZE, SIZE, 3), EMBEDDING, width=BASE / 64, padding="same")
    for layer in same.layers:
        if layer.weights:
            layer.set_weights(imported.get_layer(layer.name).get_weights())
    plain, _ = keras_embeddings(same, images)
    assert np.abs(plain - reference(folder, images)[0]).max() > 1e-2


@pytest.mark.parametrize("asked, message", [
    ({"depth": 34}, "depth is 18 in the weights, 34 was asked for"),
    ({"embedding_size": 512}, "embedding_size is 8 in the weights, 512 was asked for"),
    ({"width": 1.0}, "width is 0.0625 in the weights, 1 was asked for"),
    ({"input_size": (48, 48)}, "fc.weight takes 128 inputs; this input size gives 32x3x3 = 288"),
])
def test_mismatch_fails_naming_it(files, asked, message):
    folder = files[0]
    kwargs = {"input_size": (SIZE, SIZE), **asked}
    with pytest.raises(ValueError, match=message):
        import_backbone(folder / "backbone.pth", **kwargs)


def test_missing_and_unexpected_keys_are_named(files, tmp_path):
    _, state, _ = files
    missing = {k: v for k, v in state.items() if k != "layer2.0.conv1.weight"}
    write_torch_zip(tmp_path / "missing.pth", missing)
    with pytest.raises(ValueError, match=r"missing key 'layer2.0.conv1.weight'"):
        import_backbone(tmp_path / "missing.pth", input_size=(SIZE, SIZE))
    extra = {**state, "layer1.0.se.fc1.weight": np.ones((2, 2), np.float32)}
    write_torch_zip(tmp_path / "extra.pth", extra)
    with pytest.raises(ValueError, match=r"unexpected key 'layer1.0.se.fc1.weight'"):
        import_backbone(tmp_path / "extra.pth", input_size=(SIZE, SIZE))


def test_code_in_a_checkpoint_is_refused(files, tmp_path):
    folder = files[0]
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(folder / "backbone.pth") as source, zipfile.ZipFile(path, "w") as target:
        for item in source.namelist():
            data = source.read(item)
            if item.endswith("data.pkl"):
                data = b"cos\nsystem\n(S'echo hacked'\ntR."
            target.writestr(item, data)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load global os.system"):
        read_state_dict(path)


FC = "fc.weight"  # (8, 128) float32: a storage of 1,024 elements, 4,096 bytes


@pytest.mark.parametrize("layout, message", [
    ((0, (8, 256), (256, 1)), "fc.weight: storage holds 4096 bytes, the tensor needs 8192"),  # shape past the storage
    ((1, (8, 128), (128, 1)), "fc.weight: storage holds 4096 bytes, the tensor needs 4100"),  # offset pushes it past
    ((2**62, (8, 128), (128, 1)), f"fc.weight: storage holds 4096 bytes, the tensor needs {(2**62 + 1024) * 4}$"),
    ((0, (8, 128), (2**63, 1)), f"fc.weight: storage holds 4096 bytes, the tensor needs {(7 * 2**63 + 128) * 4}$"),
    ((0, (8, 128), (-128, 1)), r"fc.weight: strides \(-128, 1\): expected 2 integers >= 0"),
    ((-4, (8, 128), (128, 1)), r"fc.weight: storage offset -4: expected an integer >= 0"),
    ((0, (8, -128), (128, 1)), r"fc.weight: shape \(8, -128\): expected a tuple of integers >= 0"),
    ((0, (2**20, 2**20), (0, 0)), r"fc.weight: shape \(1048576, 1048576\) has 1099511627776 elements, more than the 1024"),
])
def test_tensor_layouts_outside_their_storage_are_refused_naming_the_key(files, tmp_path, layout, message):
    """Checked before any strided view: a hostile offset, shape or stride never reads past the storage."""
    state = files[1]
    write_torch_zip(tmp_path / "bad.pth", state, layouts={FC: layout})
    with pytest.raises(ValueError, match=message):
        read_state_dict(tmp_path / "bad.pth")


def test_a_short_storage_fails_the_import_in_one_line_and_writes_nothing(files, tmp_path):
    from tools import import_weights

    folder, state, _ = files
    key = f"archive/data/{list(state).index(FC)}"
    with zipfile.ZipFile(folder / "backbone.pth") as source, zipfile.ZipFile(tmp_path / "short.pth", "w") as target:
        for item in source.namelist():
            target.writestr(item, source.read(item)[:2048] if item == key else source.read(item))
    out = tmp_path / "short.keras"
    with pytest.raises(SystemExit) as exit_info:
        import_weights.main([str(tmp_path / "short.pth"), "--out", str(out), "--input-size", str(SIZE)])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and len(message.splitlines()) == 1
    assert f"{FC}: storage {key.rsplit('/', 1)[1]} holds 2048 bytes, its header declares 1024 elements" in message
    assert list(tmp_path.iterdir()) == [tmp_path / "short.pth"]  # no model, no temporary
    with pytest.raises(SystemExit) as exit_info:  # an --out that cannot be written: before any import work
        import_weights.main([str(folder / "backbone.pth"), "--out", str(tmp_path / "short.pth" / "x.keras")])
    assert exit_info.value.code == 2


def test_tool_writes_a_keras_backbone(files, tmp_path, capsys):
    from tools import import_weights

    folder, _, images = files
    out = tmp_path / "pretrained" / "r18.keras"
    report = import_weights.main([str(folder / "kept.onnx"), "--out", str(out), "--input-size", str(SIZE)])
    assert report["max_abs_difference"] < TOLERANCE and "onnxruntime vs keras" in capsys.readouterr().out
    loaded = keras.saving.load_model(out, compile=False)
    for ours, theirs in zip(keras_embeddings(loaded, images), reference(folder, images)):
        assert np.abs(ours - theirs).max() < TOLERANCE
    with pytest.raises(SystemExit, match="depth is 18 in the weights, 50 was asked for"):
        import_weights.main([str(folder / "backbone.pth"), "--out", str(tmp_path / "x.keras"), "--depth", "50",
                             "--input-size", str(SIZE)])
    assert not (tmp_path / "x.keras").exists()


def test_torch_checkpoint_if_torch_is_installed(files, tmp_path):
    torch = pytest.importorskip("torch")
    folder, state, images = files
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, tmp_path / "real.pth")
    loaded = read_state_dict(tmp_path / "real.pth")
    assert all(np.array_equal(loaded[k], state[k]) for k in state)


@pytest.fixture(scope="module")
def imported(files, tmp_path_factory):
    """The backbone.pth imported and saved as a .keras file (what model.pretrained names)."""
    path = tmp_path_factory.mktemp("imported") / "r18.keras"
    import_backbone(files[0] / "backbone.pth", input_size=(SIZE, SIZE))[0].save(path)
    return path


def test_model_pretrained_starts_training_from_the_import(files, imported, tmp_path):
    from arcface_keras.config import ConfigError, Data, Experiment, Model, validate
    from arcface_keras.training.model import build_face_model

    folder, _, images = files
    path = imported
    spec = {"type": "resnet18", "width": BASE / 64, "padding": "symmetric", "dropout": 0.2}
    config = Model(backbone=spec, head="arcface", embedding_size=EMBEDDING, pretrained=str(path))
    validate(Experiment(data=Data(synthetic={"identities": 4}), model=config))
    _, embedder, _ = build_face_model(config, num_classes=5, image_size=SIZE)
    for ours, theirs in zip(keras_embeddings(embedder, images), reference(folder, images)):
        assert np.abs(ours - theirs).max() < TOLERANCE
    with pytest.raises(ConfigError, match=r"stage1_unit1_2_pad \(ZeroPadding2D\) there, stage1_unit1_shortcut_conv \(Conv2D\) in model.backbone"):
        build_face_model(Model(backbone={**spec, "padding": "same"}, embedding_size=EMBEDDING, pretrained=str(path)),
                         num_classes=5, image_size=SIZE)
    with pytest.raises(ConfigError, match=r"layer output_dense has weights \[\(128, 8\), \(8,\)\] there, \[\(128, 16\)"):
        build_face_model(Model(backbone=spec, embedding_size=16, pretrained=str(path)), num_classes=5, image_size=SIZE)
    with pytest.raises(ConfigError, match="model.pretrained='.*missing.keras': no such file"):
        validate(Experiment(data=Data(synthetic={"identities": 4}),
                            model=Model(backbone=spec, pretrained=str(tmp_path / "missing.keras"))))


def run_from_import(tmp_path, imported, padding, *extra):
    """tools/run.py on the demo, resnet18 from the import (`padding`), one step of a tiny identity folder of
    random crops (no synthetic generation, no verification set), with `extra` overrides."""
    from tools import run as run_tool

    for identity in range(2):
        (tmp_path / "faces" / f"id{identity}").mkdir(parents=True)
        for index in range(2):
            pixels = np.random.default_rng(identity * 2 + index).integers(0, 255, (SIZE, SIZE, 3), np.uint8)
            (tmp_path / "faces" / f"id{identity}" / f"{index}.jpg").write_bytes(cv2.imencode(".jpg", pixels)[1].tobytes())
    spec = {"type": "resnet18", "width": BASE / 64, "padding": padding}
    overrides = [
        "data.synthetic={}", f"data.train={tmp_path / 'faces'}", f"data.cache_dir={tmp_path / 'cache'}",
        f"data.image_size={SIZE}", f"model.backbone={spec}", f"model.embedding_size={EMBEDDING}",
        f"model.pretrained={imported}", "train.steps_per_epoch=1", "train.epochs=1", "train.batch_size=4",
        "log.wandb=disabled", f"log.work_dir={tmp_path / 'runs'}", *extra,
    ]
    return run_tool.main(["experiments/demo_synth_mfn_arc.py", *[a for o in overrides for a in ("--set", o)]])


def test_a_pretrained_network_that_differs_stops_run_in_one_line_before_any_file(imported, tmp_path, repo_root,
                                                                                 monkeypatch):
    path = imported
    monkeypatch.chdir(repo_root)
    with pytest.raises(SystemExit) as exit_info:
        run_from_import(tmp_path, path, "same")  # the import needs "symmetric"
    message = str(exit_info.value.code)
    assert len(message.splitlines()) == 1 and message.startswith(f"error: model.pretrained {path}: layer ")
    assert "stage1_unit1_2_pad (ZeroPadding2D) there, stage1_unit1_shortcut_conv (Conv2D) in model.backbone" in message
    assert not (tmp_path / "runs" / "demo_synth_mfn_arc" / "config.json").exists()


def test_train_freeze_bn_keeps_every_batch_norm_of_the_pretrained_network(imported, tmp_path, repo_root, monkeypatch):
    """Two steps from the import with train.freeze_bn: the convolutions learn, the batch norms (statistics,
    scale and shift) end as imported; without it the first training step moves the statistics."""
    monkeypatch.chdir(repo_root)
    run_from_import(tmp_path, imported, "symmetric", "train.steps_per_epoch=2", "train.freeze_bn=true")
    tuned = keras.saving.load_model(tmp_path / "runs" / "demo_synth_mfn_arc" / "embedder.keras", compile=False)
    source = keras.saving.load_model(imported, compile=False)
    norms = [layer.name for layer in source.layers if isinstance(layer, keras.layers.BatchNormalization)]
    convs = [layer.name for layer in source.layers if isinstance(layer, keras.layers.Conv2D)]
    assert norms and convs
    for name in norms:
        for ours, theirs in zip(tuned.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs, err_msg=name)
    assert all(not np.array_equal(tuned.get_layer(name).get_weights()[0], source.get_layer(name).get_weights()[0])
               for name in convs)
