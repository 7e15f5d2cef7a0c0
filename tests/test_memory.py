"""The memory plan (training/memory.py, tools/run.py --check) against counts of a real model's arrays."""
import json

import keras
import numpy as np
import pytest
from test_distribute import tiny_experiment  # noqa: F401  (a fixture)

from arcface_keras.config import load_experiment
from arcface_keras.training import memory
from arcface_keras.training.model import build_face_model
from arcface_keras.training.optimizers import make_optimizer

PARTIAL_FC = ["model.head.sample_rate=0.25", "data.synthetic.identities=40", "model.head.seed=0"]


def real_counts(experiment, classes, batch):
    """Bytes of what a real model holds, counted on its arrays: weights, optimizer slots, every layer output
    of the backbone on a real batch (PReLU's twice), and the head's training output."""
    model, embedder, head = build_face_model(experiment.model, classes, experiment.data.image_size)
    model.compile(optimizer=make_optimizer(experiment.train, 0.1), loss=head.loss())
    model.optimizer.build(model.trainable_variables)
    nbytes = [np.asarray(w).nbytes for w in model.weights if not w.path.endswith("seed_generator_state")]
    trainable = {id(w) for w in model.trainable_weights}
    shapes = [tuple(w.shape) for w in model.trainable_weights]
    slots = [np.asarray(v).nbytes for v in model.optimizer.variables if tuple(v.shape) in shapes and v.ndim]
    images = np.random.default_rng(0).uniform(-1, 1, (batch, *embedder.input_shape[1:])).astype("float32")
    layers = [layer for layer in embedder.layers]
    outputs = keras.Model(embedder.input, [layer.output for layer in layers])(images)
    activations = sum((2 if isinstance(layer, keras.layers.PReLU) else 1) * np.asarray(out).nbytes
                      for layer, out in zip(layers, outputs))
    labels = np.arange(batch) % classes
    logits = head([embedder(images), labels], training=True)
    return {"parameters": sum(nbytes), "trainable": sum(np.asarray(w).nbytes for w in model.weights if id(w) in trainable),
            "optimizer": sum(slots), "activations": activations, "logits": tuple(logits.shape),
            "embedder": embedder, "head": head}


@pytest.mark.parametrize("overrides", [[], PARTIAL_FC], ids=["arcface", "partial_fc"])
def test_the_plan_counts_what_a_real_model_holds(tiny_experiment, overrides):  # noqa: F811
    experiment = load_experiment(tiny_experiment, overrides)
    classes, batch = (40 if overrides else 12), experiment.train.batch_size
    real = real_counts(experiment, classes, batch)
    shapes = memory.count_shapes(experiment, classes, "float32")
    parts = memory.plan(shapes, batch)
    backbone, head, k = parts["backbone"], parts["head"], real["logits"][1]
    # Partial FC: max(⌈0.25·40⌉, 8) = 10 sampled classes; else all 12
    assert k == (10 if overrides else 12) == shapes.classes_scored(batch)
    assert backbone.parameters + head.parameters == real["parameters"]
    # SGD: one momentum per weight, and two temporaries of each part's largest gradient (Partial FC: k rows of D)
    largest = [max(np.asarray(w).size for w in part.trainable_weights) for part in (real["embedder"], real["head"])]
    largest[1] = k * 16 if overrides else largest[1]
    assert real["optimizer"] == real["trainable"]
    assert backbone.optimizer + head.optimizer == real["optimizer"] + 4 * 2 * sum(largest)
    assert backbone.activations == real["activations"]
    # the head: (B, k) logits, softmax and their gradient, and the k normalised centres (D = 16) and their gradient
    assert head.activations == 4 * (3 * batch * k + 2 * k * 16)
    # TensorFlow's gradient of Partial FC's centres holds the k sampled rows only
    assert backbone.gradients + head.gradients == real["trainable"] - (4 * (40 - k) * 16 if overrides else 0)


def test_largest_batch_fits_and_one_more_does_not(tiny_experiment):  # noqa: F811
    shapes = memory.count_shapes(load_experiment(tiny_experiment, PARTIAL_FC), 40, "float32")

    def total(batch):
        return sum(part.total for part in memory.plan(shapes, batch).values())

    best = memory.largest_batch(shapes, 10**8)
    assert total(best) <= 10**8 < total(best + 1)
    assert memory.largest_batch(shapes, 1000) == 0


def test_mixed_precision_halves_the_backbone_activations(tiny_experiment):  # noqa: F811
    experiment = load_experiment(tiny_experiment)
    full, half = (memory.count_shapes(experiment, 12, precision) for precision in ("float32", "mixed_float16"))
    # the float32 input (32·32·3 values) and float32 embedding BN output (16) keep 4 bytes; every other output has 2
    float32 = 4 * (32 * 32 * 3 + 16)
    assert half.bytes_per_image == float32 + (full.bytes_per_image - float32) // 2
    assert half.backbone_weights == full.backbone_weights  # variables stay float32


@pytest.mark.parametrize("text, expected", [("80GB", 80e9), ("40GiB", 40 * 2**30), ("16000MB", 16e9),
                                            ("1.5 TB", 1.5e12), ("512", 512)])
def test_device_memory_sizes(text, expected):
    assert memory.parse_bytes(text) == expected


def test_check_prints_the_plan_and_the_largest_batch(tiny_experiment, tmp_path, capsys):  # noqa: F811
    from tools import run as run_tool

    run_tool.main([str(tiny_experiment), "--check", "--device-memory", "100MB", "--set", "data.cache_dir=" + str(tmp_path)])
    out = capsys.readouterr().out
    resolved, end = json.JSONDecoder().raw_decode(out)
    assert resolved["train"]["batch_size"] == 8
    lines = out[end:].strip().splitlines()
    assert lines[0].startswith("memory per device at batch 8 per replica, float32 (tensorflow), "
                               "1 optimizer slot(s) per weight, 12 of 12 classes scored per step")
    assert [line.split()[0] for line in lines[1:5]] == ["parameters", "backbone", "head", "total"]
    shapes = memory.count_shapes(load_experiment(tiny_experiment), 12, "float32")
    assert lines[-1] == f"largest batch per replica within 100.00 MB: {memory.largest_batch(shapes, 10**8):,}"
    assert not (tmp_path / "synthetic").exists()  # nothing prepared
    with pytest.raises(SystemExit, match="--device-memory '80 gigs': expected a size such as 80GB"):
        run_tool.main([str(tiny_experiment), "--check", "--device-memory", "80 gigs"])


def test_classes_come_from_the_manifest_or_are_said_to_be_unknown(tiny_experiment, tmp_path, capsys):  # noqa: F811
    from tools import run as run_tool

    folder = tmp_path / "faces"
    folder.mkdir()
    train = ["--set", "data.synthetic={}", "--set", f"data.train={folder}", "--check"]
    run_tool.main([str(tiny_experiment), *train])
    assert "the head left out: its classes are known once the data is prepared" in capsys.readouterr().out
    (folder / "manifest.json").write_text(json.dumps({"num_classes": 1000, "num_images": 5, "shards": {}}))
    run_tool.main([str(tiny_experiment), *train])
    assert "1,000 of 1,000 classes scored per step" in capsys.readouterr().out
