"""arcface_torch / insightface MobileFaceNet weights (torch zip state dict; ONNX with BN kept, folded,
folded in the convs only as PyTorch exported the published w600k_mbf, or with the weight ops of an
export without constant folding) → our backbone, compared with onnxruntime running the same graph."""
import sys
from pathlib import Path

import keras
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arcface_torch_files import (  # noqa: E402
    onnxruntime_embeddings, random_mbf_state_dict, write_mbf_onnx, write_torch_zip,
)

from arcface_keras.evaluation.verification import l2_normalize  # noqa: E402
from arcface_keras.pretrained.weights import import_backbone, read_weights  # noqa: E402

SIZE, EMBEDDING = 32, 8  # 32x32 input → 2x2 feature map (112 → 7 in the published model)
# arcface_torch's mbf shape (grouped stem conv, GDC) at width 2 with one unit per stage, and
# insightface's published output at 1/16 width with residual stem units and an empty last stage.
NETWORKS = {
    "gdc": {"width": 2.0, "blocks": (1, 1, 1, 1), "output": "GDC"},
    "flatten": {"width": 1 / 16, "blocks": (2, 1, 2, 0), "output": "flatten"},
}
# Float32 through ~40 layers, two implementations summing in different orders: ~1e-6 on unit vectors.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mbf")
    states = {}
    for name, net in NETWORKS.items():
        states[name] = random_mbf_state_dict(net["width"], net["blocks"], EMBEDDING, net["output"], SIZE // 16, seed=1)
        write_mbf_onnx(folder / f"{name}_kept.onnx", states[name], SIZE)
        write_mbf_onnx(folder / f"{name}_folded.onnx", states[name], SIZE, fold_bn=True)
    write_mbf_onnx(folder / "flatten_exported.onnx", states["flatten"], SIZE, fold_bn=True, fold_final=False)
    write_mbf_onnx(folder / "gdc_unfolded.onnx", states["gdc"], SIZE, unfolded=True)
    write_torch_zip(folder / "gdc.pth", states["gdc"])
    images = np.random.default_rng(2).uniform(-1, 1, (4, SIZE, SIZE, 3)).astype(np.float32)
    return folder, states, images


def normalised(embed, images):
    """Normalised embeddings, plain and flip-summed, of `embed` (images NHWC → raw embeddings)."""
    plain = np.asarray(embed(images), np.float64)
    flipped = np.asarray(embed(np.ascontiguousarray(images[:, :, ::-1])), np.float64)
    return l2_normalize(plain), l2_normalize(plain + flipped)


def assert_matches_onnxruntime(model, folder, network, images):
    reference = normalised(lambda x: onnxruntime_embeddings(folder / f"{network}_kept.onnx", x), images)
    for ours, theirs in zip(normalised(model.predict_on_batch, images), reference):
        assert np.abs(ours - theirs).max() < TOLERANCE


@pytest.mark.parametrize("name", ["gdc.pth", "gdc_kept.onnx", "gdc_folded.onnx", "gdc_unfolded.onnx",
                                  "flatten_kept.onnx", "flatten_folded.onnx", "flatten_exported.onnx"])
def test_imported_backbone_matches_onnxruntime(files, name):
    folder, _, images = files
    network = name.split("_")[0].split(".")[0]
    model, _ = import_backbone(folder / name, input_size=(SIZE, SIZE), embedding_size=EMBEDDING, **NETWORKS[network])
    assert model.name == "mobilefacenet" and model.output_shape == (None, EMBEDDING)
    assert_matches_onnxruntime(model, folder, network, images)


def test_state_dicts_agree(files):
    folder, states, _ = files
    for path in (folder / "gdc.pth", folder / "gdc_kept.onnx"):
        architecture, state = read_weights(path)
        assert architecture == "mobilefacenet"
        assert set(state) == {k for k in states["gdc"] if not k.endswith("num_batches_tracked")} | (
            set(states["gdc"]) if path.suffix == ".pth" else set())
        assert all(np.array_equal(state[k], states["gdc"][k]) for k in state)


def rewritten(source, target, change):
    """A copy of the ONNX file `source` with `change(initializers by name, graph)` applied."""
    model = onnx.load(str(source))
    change({init.name: init for init in model.graph.initializer}, model.graph)
    onnx.save(model, str(target))
    return target


def test_malformed_files_fail_naming_the_tensor(files, tmp_path):
    folder, states, _ = files

    def wrong_shape(inits, graph):
        weight = numpy_helper.to_array(inits["conv_sep.layers.0.weight"])
        inits["conv_sep.layers.0.weight"].CopyFrom(numpy_helper.from_array(weight[:, :-1], "conv_sep.layers.0.weight"))

    def missing(inits, graph):
        graph.initializer.remove(inits["layers.4.layers.1.layers.1.running_var"])

    path = rewritten(folder / "flatten_kept.onnx", tmp_path / "shape.onnx", wrong_shape)
    with pytest.raises(ValueError, match=r"shape.onnx: conv_sep.layers.0.weight has shape \(32, 7, 1, 1\), "
                                         r"layer head_conv needs \(1, 1, 8, 32\)$"):
        import_backbone(path, input_size=(SIZE, SIZE))
    path = rewritten(folder / "flatten_kept.onnx", tmp_path / "missing.onnx", missing)
    with pytest.raises(ValueError, match=r"missing.onnx: BatchNormalization '\w+' input 4 "
                                         r"'layers.4.layers.1.layers.1.running_var' is not a constant$"):
        import_backbone(path, input_size=(SIZE, SIZE))
    missing_key = "layers.2.layers.1.layers.0.weight"
    write_torch_zip(tmp_path / "missing.pth", {k: v for k, v in states["gdc"].items() if k != missing_key})
    with pytest.raises(ValueError, match=r"missing key 'layers.2.layers.1.layers.0.weight'$"):
        import_backbone(tmp_path / "missing.pth", input_size=(SIZE, SIZE))


@pytest.mark.parametrize("asked, message", [
    ({"blocks": (1, 4, 6, 2)}, r"blocks is \(1, 1, 1, 1\) in the weights, \(1, 4, 6, 2\) was asked for"),
    ({"output": "flatten"}, "output is GDC in the weights, flatten was asked for"),
    ({"depth": 50}, "depth does not apply to MobileFaceNet weights"),
    ({"architecture": "iresnet"}, "missing key 'conv1.weight': not an arcface_torch IResNet state dict"),
])
def test_mismatch_fails_naming_it(files, asked, message):
    with pytest.raises(ValueError, match=message):
        import_backbone(files[0] / "gdc.pth", input_size=(SIZE, SIZE), **asked)


def test_tool_detects_and_writes_a_mobilefacenet(files, tmp_path, capsys):
    from tools import import_weights

    folder, _, images = files
    out = tmp_path / "mbf.keras"
    report = import_weights.main([str(folder / "flatten_exported.onnx"), "--out", str(out), "--input-size", str(SIZE)])
    assert report["max_abs_difference"] < TOLERANCE and report["model"] == "mobilefacenet"
    assert "'blocks': [2, 1, 2, 0], 'padding': 'symmetric', 'output': 'flatten'}" in capsys.readouterr().out
    assert_matches_onnxruntime(keras.saving.load_model(out, compile=False), folder, "flatten", images)
    with pytest.raises(SystemExit, match=r"error: .*gdc_kept.onnx: after tensor '\w+' expected BatchNormalization"):
        import_weights.main([str(folder / "gdc_kept.onnx"), "--out", str(tmp_path / "x.keras"),
                             "--architecture", "iresnet", "--input-size", str(SIZE)])
    assert not (tmp_path / "x.keras").exists()


def test_model_pretrained_starts_training_from_the_import(files, tmp_path):
    from arcface_keras.config import ConfigError, Data, Experiment, Model, validate
    from arcface_keras.training.model import build_face_model

    folder, _, images = files
    path = tmp_path / "mbf.keras"
    model, spec = import_backbone(folder / "flatten_exported.onnx", input_size=(SIZE, SIZE))
    model.save(path)
    assert spec == {"type": "mobilefacenet", **NETWORKS["flatten"], "blocks": [2, 1, 2, 0], "padding": "symmetric"}
    config = Model(backbone=spec, head="arcface", embedding_size=EMBEDDING, pretrained=str(path))
    validate(Experiment(data=Data(synthetic={"identities": 4}), model=config))
    _, embedder, _ = build_face_model(config, num_classes=5, image_size=SIZE)
    assert_matches_onnxruntime(embedder, folder, "flatten", images)
    with pytest.raises(ConfigError, match=r"stem_pad \(ZeroPadding2D\) there, stem_conv \(Conv2D\) in model.backbone"):
        build_face_model(Model(backbone={**spec, "padding": "same"}, embedding_size=EMBEDDING, pretrained=str(path)),
                         num_classes=5, image_size=SIZE)


def test_a_backbone_saved_with_keras_grouped_conv2d_still_starts_training(files, tmp_path):
    """Imports saved the stem's grouped conv as Keras' Conv2D; its weights load into today's GroupedConv2D."""
    from arcface_keras.backbones.layers import GroupedConv2D
    from arcface_keras.config import Model
    from arcface_keras.training.model import build_face_model

    folder, _, images = files
    model, spec = import_backbone(folder / "gdc_kept.onnx", input_size=(SIZE, SIZE))
    as_keras = lambda layer: keras.layers.Conv2D.from_config(layer.get_config()) if isinstance(  # noqa: E731
        layer, GroupedConv2D) else layer.__class__.from_config(layer.get_config())
    old = keras.models.clone_model(model, clone_function=as_keras)
    old.set_weights(model.get_weights())
    assert type(old.get_layer("stem_dw_conv")) is keras.layers.Conv2D
    old.save(tmp_path / "old.keras")
    config = Model(backbone=spec, head="arcface", embedding_size=EMBEDDING, pretrained=str(tmp_path / "old.keras"))
    _, embedder, _ = build_face_model(config, num_classes=5, image_size=SIZE)
    assert isinstance(embedder.get_layer("stem_dw_conv"), GroupedConv2D)
    assert_matches_onnxruntime(embedder, folder, "gdc", images)
