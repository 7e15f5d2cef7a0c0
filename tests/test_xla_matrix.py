"""XLA and mixed precision on the CPU: every head, TensorFlow and JAX, float32 / mixed_float16 / mixed_bfloat16.

What `train.precision=auto` and `train.jit_compile=auto` run on a GPU (tests/xla_matrix.py has the model
and the steps). Each cell steps a model holding every head compiled with XLA and compares it with the
non-XLA reference, TensorFlow's kernels run one operation at a time, from the same state: the TensorFlow
cells in this process, the JAX cells (JAX always compiles) in one subprocess started as soon as the
references exist, so that it runs beside the TensorFlow compilations. The default matrix uses a backbone
with one of each unit of IResNet and MobileFaceNet; the registered backbones at tiny widths are `slow`.
"""
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xla_matrix as xm
from arcface_keras.registry import HEADS

CHECK = Path(__file__).resolve().parent / "jax_xla_matrix_check.py"
BACKENDS = ("tensorflow", "jax")
BACKBONES = ("blocks", "resnet18", "mobilefacenet")


def is_slow(backbone, backend, precision):
    """The default run: the one-of-each-unit backbone, every JAX cell (one subprocess, beside this process's
    compilations) and TensorFlow's float32 and mixed_float16 (loss scaling). TensorFlow's mixed_bfloat16 (its
    first step compiles 15 s of CPU more; JAX's covers the precision) and the registered backbones are `slow`."""
    return backbone != "blocks" or (backend, precision) == ("tensorflow", "mixed_bfloat16")


CELLS = [pytest.param(backbone, backend, precision, marks=[pytest.mark.slow] if is_slow(backbone, backend, precision)
                      else [], id=f"{backend}-{precision}-{backbone}")
         for backbone in BACKBONES for backend in BACKENDS for precision in xm.PRECISIONS]
# One step from the same state, XLA against the reference: each head's loss may differ by RTOL · max(|loss|, 1) and
# each group's change (a head's variables with their momentum, the backbone's) by RTOL · ‖change‖. Both sides round
# each result of the step (about two per backbone layer, forward and backward) to the compute dtype, at other places:
#  float32 (u = 2^-24): errors that add like a random walk, √(2 · layers) · u, times √2048 for the sums (of up to
#     batch × 16 × 16 terms) that XLA orders otherwise, 8x: about 2e-4 of the change;
#  mixed precision: 1e-2 for float16 (u = 2^-11, so 20 u), 5e-2 for bfloat16 (u = 2^-8, 13 u): the same walk over
#     the default backbone's 35 layers gives √70 ≈ 8.4 u (sums accumulate in float32 on both sides), with room.
MIXED_RTOL = {"mixed_float16": 1e-2, "mixed_bfloat16": 5e-2}
ROUNDING_MARGIN, UNIT_ROUNDOFF_32 = 8, 2.0**-24


def tolerance(precision, layers):
    if precision in MIXED_RTOL:
        return MIXED_RTOL[precision]
    return ROUNDING_MARGIN * math.sqrt(2 * layers) * math.sqrt(xm.BATCH * 16 * 16) * UNIT_ROUNDOFF_32


class Matrix:
    """A backbone's cells, each computed on first use: the references (all precisions, as the JAX subprocess needs
    them), then the JAX subprocess for every precision, started at once so that it runs beside the TensorFlow
    cells' compilations."""

    def __init__(self, backbone, tmp_path):
        self.backbone, self.done = backbone, {}
        self.references = {(backbone, p): xm.reference(backbone, p) for p in xm.PRECISIONS}
        with open(tmp_path / "references.pkl", "wb") as f:
            pickle.dump(self.references, f)
        self.jax_results = tmp_path / "jax.pkl"
        self.jax = subprocess.Popen([sys.executable, str(CHECK), str(tmp_path / "references.pkl"),
                                     str(self.jax_results)], env={**os.environ, "KERAS_BACKEND": "jax"},
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def __call__(self, backend, precision):
        if (backend, precision) not in self.done:
            self.done[backend, precision] = (self.tensorflow if backend == "tensorflow" else self.jax_cell)(precision)
        return self.references[self.backbone, precision], self.done[backend, precision]

    def tensorflow(self, precision):
        try:
            return xm.compiled(self.backbone, precision, self.references[self.backbone, precision])
        except Exception as exc:  # reported by the cell's own tests
            return {"error": f"{type(exc).__name__}: {exc}"[:2000]}

    def jax_cell(self, precision):
        self.close()
        results = {}
        if self.jax_results.is_file():
            with open(self.jax_results, "rb") as f:
                results = pickle.load(f)
        return results.get((self.backbone, precision), {"error": f"no result: {self.jax_output[-3000:]}"})

    def close(self):
        """Wait for the JAX subprocess (once) and keep its output."""
        if not hasattr(self, "jax_output"):
            try:
                self.jax_output = self.jax.communicate(timeout=1200)[0]
            finally:
                if self.jax.poll() is None:
                    self.jax.kill()


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """The Matrix of a backbone, built on first use."""
    built = {}

    def cells(backbone):
        if backbone not in built:
            built[backbone] = Matrix(backbone, tmp_path_factory.mktemp(backbone))
        return built[backbone]

    yield cells
    for each in built.values():
        each.close()


def cell(matrix, backbone, backend, precision):
    ref, compiled = matrix(backbone)(backend, precision)
    assert "error" not in compiled, f"{backend} {precision} with XLA: {compiled['error']}"
    return ref, compiled


def group_of(path, optimizer_variable):
    """A head's name for its variables and their momentum; "backbone" for the rest."""
    name = path.split("/", 1)[1] if optimizer_variable else path.split("/")[0]
    for head in sorted(xm.HEAD_SPECS, key=len, reverse=True):
        if name == head or name.startswith(head + ("_" if optimizer_variable else "/")):
            return head
    return "backbone"


def exact(ref, index):
    """Compared exactly: step counters, the learning rate, the loss scale (powers of two)."""
    path = ref["paths"][index]
    return not ref["dtypes"][index].startswith("float") or path.endswith(("/learning_rate", "/dynamic_scale"))


def group_norms(ref, arrays):
    """{group: ‖a − b‖} for each (a, b) pair of states in `arrays`, over the variables compared with a tolerance,
    and the exactly compared ones that differ between the first pair."""
    squares, mismatches = {}, []
    for index, path in enumerate(ref["paths"]):
        (first, second), *_ = arrays
        if exact(ref, index):
            if not np.array_equal(first[index], second[index]):
                mismatches.append(f"{path}: {first[index]} instead of {second[index]}")
            continue
        group = group_of(path, index >= ref["weights"])
        sums = squares.setdefault(group, [0.0] * len(arrays))
        for k, (a, b) in enumerate(arrays):
            sums[k] += np.sum(np.square(a[index].astype("float64") - b[index]))
    return {group: [math.sqrt(v) for v in sums] for group, sums in squares.items()}, mismatches


def test_every_registered_head_is_in_the_matrix():
    shipped = {n for n in HEADS.names() if HEADS.get(n).__module__.startswith("arcface_keras.")}
    specs = {spec if isinstance(spec, str) else spec["type"] for spec in xm.HEAD_SPECS.values()}
    assert shipped == specs and xm.HEAD_SPECS["partial_fc"]["sample_rate"] < 1


@pytest.mark.parametrize("backbone, backend, precision", CELLS)
def test_each_xla_step_equals_the_reference_step(matrix, backbone, backend, precision):
    ref, compiled = cell(matrix, backbone, backend, precision)
    rtol, problems = tolerance(precision, ref["layers"]), []
    starts = [ref["start"]] + ref["states"][:-1]
    for step in range(xm.STEPS):
        for head, losses in compiled["each"]["losses"].items():
            got, expected = losses[step], ref["losses"][head][step]
            if not abs(got - expected) <= rtol * max(abs(expected), 1.0):
                problems.append(f"step {step} {head}: loss {got:.6g} instead of {expected:.6g} (rtol {rtol:.2g})")
        after = ref["states"][step]
        norms, mismatches = group_norms(ref, [(compiled["each"]["states"][step], after), (after, starts[step])])
        for group, (difference, change) in norms.items():
            if not difference <= rtol * change:
                problems.append(f"step {step} {group}: off by {difference:.3g} in a change of {change:.3g} "
                                f"(rtol {rtol:.2g})")
        problems += [f"step {step} {m}" for m in mismatches]
    assert not problems, f"{backend} {precision}:\n" + "\n".join(problems)


@pytest.mark.parametrize("backbone, backend, precision", CELLS)
def test_compiled_training_goes_on_and_lowers_the_loss(matrix, backbone, backend, precision):
    ref, compiled = cell(matrix, backbone, backend, precision)
    steps = compiled["steps"]
    assert np.isfinite(steps["total"]).all() and steps["total"][-1] < steps["total"][0], steps["total"]
    optimized = [i for i in range(len(ref["paths"]))  # what an update moves: the weights and their momentum
                 if ref["trainable"][i] or (i >= ref["weights"] and not exact(ref, i))]
    scale = ref["paths"].index("loss_scale_optimizer/dynamic_scale") if precision == "mixed_float16" else None
    for step in range(xm.STEPS):
        moved = {}
        for name, states in (("reference", ref["states"]), ("compiled", steps["states"])):
            before = ref["start"] if step == 0 else states[step - 1]
            moved[name] = {ref["paths"][i] for i in optimized if not np.array_equal(before[i], states[step][i])}
        before, after = (ref["start"] if step == 0 else steps["states"][step - 1]), steps["states"][step]
        if scale is not None and step == xm.FORCED_STEP:  # the scaled gradients overflowed: the update is skipped
            assert not moved["compiled"] and after[scale] == before[scale] / 2, (moved, before[scale], after[scale])
        else:  # an update moves what the reference's moves (weight decay: every weight that is not zero)
            assert moved["compiled"] == moved["reference"] and moved["reference"], (step, moved)
            assert scale is None or after[scale] == before[scale]


@pytest.mark.parametrize("backbone, backend, precision", CELLS)
def test_heads_return_float32_and_keep_float32_variables(matrix, backbone, backend, precision):
    ref, compiled = cell(matrix, backbone, backend, precision)
    assert set(compiled["outputs"].values()) == {"float32"}, compiled["outputs"]
    kept = {path: dtype for path, dtype in zip(compiled["paths"][:ref["weights"]], compiled["dtypes"])
            if group_of(path, False) != "backbone"}
    assert {"center/centers", "adaface/batch_mean", "curricularface/t", "partial_fc/kernel"} <= set(kept)
    assert set(kept.values()) == {"float32"}, kept


@pytest.mark.parametrize("backbone, backend, precision", CELLS)
def test_partial_fc_rows_outside_the_batch(matrix, backbone, backend, precision):
    """TensorFlow's RowSparseSGD leaves them alone under XLA too; on JAX the gradient is dense, so weight
    decay shrinks them (and only it: their gradient and momentum are zero)."""
    ref, compiled = cell(matrix, backbone, backend, precision)
    kernel = ref["paths"].index("partial_fc/kernel")
    outside = np.setdiff1d(np.arange(xm.CLASSES), xm.batch()[1])
    start, end = ref["start"][kernel][outside], compiled["steps"]["states"][-1][kernel][outside]
    if backend == "tensorflow":
        np.testing.assert_array_equal(end, start)
    else:
        applied = xm.STEPS - (precision == "mixed_float16")
        decay = (1 - xm.TRAIN.lr * xm.TRAIN.weight_decay) ** applied
        np.testing.assert_allclose(end, start * decay, rtol=4 * applied * 2.0**-24)  # a rounding per step
