"""`auto` for `train.precision` and `train.jit_compile`: XLA and mixed precision where they pay.

  GPU (NVIDIA)  XLA on; mixed_bfloat16 from compute capability 8.0 (Ampere: bfloat16 tensor cores),
                mixed_float16 before it (Volta, Turing: float16 tensor cores; Keras scales the loss)
  TPU           XLA on; mixed_bfloat16
  CPU           float32, XLA off: TensorFlow's own kernels beat XLA's convolutions (2.7x on IR-50),
                and float32 computes the same numbers on every CPU (tests, demos); mixed_bfloat16
                trained IR-50 8x slower on a CPU without bfloat16 instructions and 1.7x faster on
                one with AVX512-BF16 (bench/RESULTS.md): set it explicitly there
  JAX backend   XLA always: Keras' JAX trainer compiles each step with jax.jit (off runs eagerly)
  TensorFlow, several replicas   XLA off (`across_replicas`): Keras compiles the whole data-parallel step,
                every replica's part of it, into one XLA computation on the first device, which cannot read
                the other devices' variables (https://www.tensorflow.org/xla/known_issues, "tf.Variable on a
                different device"); the start line says so, and an explicit true is refused

Explicit settings are kept as given. `resolve` takes the backend and a `Device`, so every rule is
checked without the hardware; `local_device` describes the first accelerator this process sees.
"""
from dataclasses import dataclass, replace

from arcface_keras.config import ConfigError

AUTO = "auto"
AMPERE = (8, 0)


@dataclass(frozen=True)
class Device:
    kind: str  # "cpu", "gpu" or "tpu"
    name: str = ""
    compute_capability: tuple = ()  # (major, minor) of an NVIDIA GPU

    def __str__(self):
        capability = ".".join(map(str, self.compute_capability))
        return " ".join(part for part in (self.kind, self.name, capability and f"(compute capability {capability})") if part)


@dataclass(frozen=True)
class Choice:
    """What a run trains with, `auto` resolved."""

    precision: str
    jit_compile: bool
    device: Device
    note: str = ""  # why auto's rule for the device was not followed

    def describe(self):
        note = f"; {self.note}" if self.note else ""
        return f"{self.precision}, XLA {'on' if self.jit_compile else 'off'} ({self.device}{note})"


def resolve(precision, jit_compile, backend, device):
    """The `Choice` for `train.precision` and `train.jit_compile` (either may be "auto") on `device`."""
    if precision == AUTO:
        precision = auto_precision(device)
    if jit_compile == AUTO:
        jit_compile = backend == "jax" or device.kind != "cpu"
    return Choice(precision, bool(jit_compile), device)


def across_replicas(choice, jit_compile, backend, replicas):
    """`choice` for a run over `replicas` replicas: on TensorFlow with several, XLA off when `jit_compile`
    (train.jit_compile) is auto, a ConfigError when it is true (see the module docstring)."""
    if backend != "tensorflow" or replicas < 2 or not choice.jit_compile:
        return choice
    if jit_compile is True:
        raise ConfigError(f"train.jit_compile=true: Keras cannot compile a TensorFlow step over {replicas} replicas "
                          "with XLA (one device would read the others' variables); use train.jit_compile=auto "
                          "(XLA off then) or false, or the JAX backend")
    return replace(choice, jit_compile=False, note=f"Keras cannot compile TensorFlow's step over {replicas} replicas")


def auto_precision(device):
    if device.kind == "tpu":
        return "mixed_bfloat16"
    if device.kind == "gpu":
        return "mixed_bfloat16" if tuple(device.compute_capability) >= AMPERE else "mixed_float16"
    return "float32"


def local_device(backend):
    """The device this process trains on first: a GPU or TPU if the backend sees one, else the CPU.

    On TensorFlow only physical devices are listed, which does not start the runtime (a
    multi-worker strategy must be created before it starts)."""
    if backend == "jax":
        import jax

        first = jax.devices()[0]
        capability = getattr(first, "compute_capability", "") or ""
        return Device(first.platform, first.device_kind if first.platform != "cpu" else "",
                      tuple(int(part) for part in capability.split(".")) if capability else ())
    if backend == "tensorflow":
        import tensorflow as tf

        for kind in ("GPU", "TPU"):
            found = tf.config.list_physical_devices(kind)
            if found:
                details = tf.config.experimental.get_device_details(found[0])
                return Device(kind.lower(), details.get("device_name", ""), tuple(details.get("compute_capability", ())))
    return Device("cpu")
