import pytest

from arcface_keras.registry import Registry


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
    with pytest.raises(TypeError, match=r"unknown keyword 'sise'; accepted: size, colour"):
        things.build({"type": "alpha", "sise": 2})


def test_bad_spec_and_duplicate(things):
    with pytest.raises(TypeError, match="'type' key"):
        things.build({"size": 2})
    with pytest.raises(ValueError, match="already registered"):
        things.register("beta")(lambda: None)


def test_project_registries_hold_their_components():
    from arcface_keras import augment, backbones, heads  # noqa: F401
    from arcface_keras.registry import AUGMENTATIONS, BACKBONES, HEADS

    assert {"mobilefacenet", "resnet50"} <= set(BACKBONES.names())
    assert {"softmax", "arcface"} <= set(HEADS.names())
    assert "flip" in AUGMENTATIONS.names()
