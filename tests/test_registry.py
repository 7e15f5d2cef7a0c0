import os
import subprocess
import sys

import pytest

from arcface_keras.registry import Registry, accepted_keywords


@pytest.fixture
def things():
    registry = Registry("thing")

    @registry.register("alpha")
    class Alpha:
        def __init__(self, size=1, *, colour="red", **kwargs):
            self.size, self.colour = size, colour

    @registry.register("beta")
    def beta(depth=2):
        return ("beta", depth)

    return registry


def test_build_from_name_and_dict(things):
    assert things.build("alpha").size == 1
    built = things.build({"type": "alpha", "size": 3, "colour": "blue"})
    assert (built.size, built.colour) == (3, "blue")
    assert things.build({"type": "beta", "depth": 5}) == ("beta", 5)
    assert things.build("alpha", size=7).size == 7
    assert things.names() == ["alpha", "beta"]


def test_unknown_name_lists_names_and_closest(things):
    with pytest.raises(KeyError) as err:
        things.build("alpah")
    message = str(err.value)
    assert "'alpah'" in message and "did you mean 'alpha'" in message and "alpha, beta" in message


def test_unknown_keyword_names_it_and_accepted(things):
    with pytest.raises(TypeError, match=r"unknown keyword 'sise'; did you mean 'size'\? accepted: size, colour"):
        things.build({"type": "alpha", "sise": 2})


def test_bad_spec_and_duplicate(things):
    with pytest.raises(TypeError, match="'type' key"):
        things.build({"size": 2})
    with pytest.raises(ValueError, match="already registered"):
        things.register("beta")(lambda: None)


def test_a_keyword_the_engine_fills_in_is_refused_in_a_spec_and_given_by_build():
    registry = Registry("thing", supplied={"size": "thing.size (set that instead)"})
    registry.register("alpha")(lambda size=1, depth=2: (size, depth))
    with pytest.raises(ValueError, match=r"^thing 'alpha' got size=3: expected no size, the engine sets it from "
                                         r"thing.size \(set that instead\)$"):
        registry.check({"type": "alpha", "size": 3})
    assert registry.build({"type": "alpha", "depth": 4}, size=5) == (5, 4)


def test_a_check_hook_sees_every_keyword_with_its_default_and_the_experiment():
    registry, seen = Registry("thing"), []

    def depth_below_limit(keywords, experiment):
        seen.append((keywords, experiment))
        if experiment is not None and keywords["depth"] >= experiment:
            raise ValueError(f"got depth={keywords['depth']} with limit={experiment}: expected depth < {experiment}")

    registry.register("alpha", check=depth_below_limit)(lambda size=1, depth=2: (size, depth))
    registry.check({"type": "alpha", "size": 3}, 5)
    assert seen == [({"size": 3, "depth": 2}, 5)]
    with pytest.raises(ValueError, match=r"^thing 'alpha' got depth=7 with limit=5: expected depth < 5$"):
        registry.check({"type": "alpha", "depth": 7}, 5)
    assert registry.build({"type": "alpha", "depth": 7}) == (1, 7)  # alone: no experiment to compare with


def test_forwarded_keywords_of_our_base_classes_count():
    from arcface_keras.registry import HEADS

    assert {"m", "easy_margin", "s", "sample_rate", "seed"} <= set(accepted_keywords(HEADS.get("arcface")))
    assert "dtype" not in accepted_keywords(HEADS.get("arcface"))  # Keras' own layer keywords do not count
    HEADS.check({"type": "cosface", "s": 30.0, "sample_rate": 0.5, "m": 0.2})


def test_registries_list_every_shipped_component_without_importing_it(repo_root):
    """In a fresh interpreter, the registry module alone lists what the package ships."""
    code = ("from arcface_keras.registry import AUGMENTATIONS, BACKBONES, HEADS, LR_SCHEDULES, OPTIMIZERS\n"
            "for r in (BACKBONES, HEADS, AUGMENTATIONS, OPTIMIZERS, LR_SCHEDULES): print(','.join(r.names()))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    backbones, heads, augmentations, optimizers, schedules = [set(line.split(",")) for line in proc.stdout.split()]
    assert {"mobilefacenet", "resnet18", "resnet34", "resnet50", "resnet100"} == backbones
    assert {"softmax", "arcface", "cosface", "combined", "adaface", "curricularface", "triplet", "center"} == heads
    assert {"flip", "random_crop", "color_jitter", "variety", "grayscale"} <= augmentations
    assert {"sgd", "adamw"} == optimizers and {"cosine", "polynomial", "step", "constant"} == schedules


def test_optimizer_entries_build():
    import keras

    from arcface_keras.config import Train
    from arcface_keras.training.optimizers import make_optimizer

    assert isinstance(make_optimizer(Train(optimizer="adamw", weight_decay=0.05), 0.1), keras.optimizers.AdamW)
    assert make_optimizer(Train(optimizer="sgd", momentum=0.8), 0.1).momentum == 0.8
