"""`auto` precision and XLA: the rule for each device, the config values, the CPU this runs on."""
import pytest

from arcface_keras.config import ConfigError, Data, Experiment, Train, apply_overrides, validate
from arcface_keras.training.auto import Device, across_replicas, local_device, resolve

CPU = Device("cpu")
A100 = Device("gpu", "NVIDIA A100-SXM4-80GB", (8, 0))
H100 = Device("gpu", "NVIDIA H100 80GB HBM3", (9, 0))
V100 = Device("gpu", "Tesla V100-SXM2-16GB", (7, 0))
T4 = Device("gpu", "Tesla T4", (7, 5))
TPU = Device("tpu", "TPU v4")


@pytest.mark.parametrize("backend, device, precision, jit", [
    ("tensorflow", CPU, "float32", False),  # measured fastest on CPU (bench/RESULTS.md)
    ("jax", CPU, "float32", True),  # the JAX trainer always compiles
    ("tensorflow", A100, "mixed_bfloat16", True),
    ("jax", H100, "mixed_bfloat16", True),
    ("tensorflow", V100, "mixed_float16", True),  # before Ampere: float16 tensor cores, loss scaling
    ("tensorflow", T4, "mixed_float16", True),
    ("jax", TPU, "mixed_bfloat16", True),
])
def test_auto_picks_per_device(backend, device, precision, jit):
    choice = resolve("auto", "auto", backend, device)
    assert (choice.precision, choice.jit_compile) == (precision, jit)
    assert choice.device == device


def test_explicit_settings_are_kept():
    choice = resolve("mixed_float16", False, "tensorflow", A100)
    assert (choice.precision, choice.jit_compile) == ("mixed_float16", False)
    assert resolve("float32", True, "tensorflow", CPU).jit_compile is True


def test_this_machine_resolves_to_what_its_device_gets():
    device = local_device("tensorflow")
    choice = resolve("auto", "auto", "tensorflow", device)
    if device.kind == "cpu":
        assert (choice.precision, choice.jit_compile) == ("float32", False)
    else:
        assert choice.jit_compile and choice.precision.startswith("mixed_")
    assert str(device).startswith(device.kind)


def test_auto_is_the_default_and_a_valid_override():
    assert (Experiment().train.precision, Experiment().train.jit_compile) == ("auto", "auto")
    experiment = apply_overrides(Experiment(data=Data(synthetic={"identities": 4})),
                                 ["train.jit_compile=auto", "train.precision=auto"])
    validate(experiment)
    assert apply_overrides(experiment, ["train.jit_compile=off"]).train.jit_compile is False
    with pytest.raises(ConfigError, match="train.jit_compile='sometimes': expected true or false, or auto"):
        apply_overrides(Experiment(), ["train.jit_compile=sometimes"])
    with pytest.raises(ConfigError, match="train.precision='bfloat16': expected one of 'auto', 'float32'"):
        validate(apply_overrides(experiment, ["train.precision=bfloat16"]))
    with pytest.raises(ConfigError, match="train.jit_compile='sometimes': expected one of bool, 'auto'"):
        validate(Experiment(data=Data(synthetic={"identities": 4}), train=Train(jit_compile="sometimes")))


def test_several_tensorflow_replicas_train_without_xla():
    """Keras compiles TensorFlow's whole data-parallel step on one device, which cannot read the other replicas'
    variables (the step fails at its first run): auto turns XLA off and says why, an explicit true is refused."""
    choice = resolve("auto", "auto", "tensorflow", A100)
    two = across_replicas(choice, "auto", "tensorflow", 2)
    assert (two.precision, two.jit_compile) == ("mixed_bfloat16", False)
    assert two.describe().endswith("(compute capability 8.0); Keras cannot compile TensorFlow's step over 2 replicas)")
    assert across_replicas(choice, "auto", "tensorflow", 1) == choice
    assert across_replicas(resolve("auto", "auto", "jax", A100), "auto", "jax", 8).jit_compile  # JAX shards one program
    with pytest.raises(ConfigError, match="train.jit_compile=true: Keras cannot compile a TensorFlow step over 4 "):
        across_replicas(resolve("auto", True, "tensorflow", A100), True, "tensorflow", 4)
