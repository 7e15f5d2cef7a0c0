
import numpy as np
import pytest

from arcface_keras.training.schedules import WarmupSchedule, scaled_lr

pytestmark = pytest.mark.numeric  # also run with oneDNN off (see Makefile)


def values(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_warmup_is_linear_then_cosine_reaches_zero():
    schedule = WarmupSchedule(0.1, total_steps=110, warmup_steps=10, kind="cosine")
    np.testing.assert_allclose(values(schedule, [0, 4, 9]), [0.01, 0.05, 0.1], rtol=1e-6)
    np.testing.assert_allclose(values(schedule, [10, 60, 110]), [0.1, 0.05, 0.0], atol=1e-7)


def test_polynomial_step_and_constant():
    poly = WarmupSchedule(0.2, total_steps=100, kind="polynomial")
    np.testing.assert_allclose(values(poly, [0, 50, 100]), [0.2, 0.2 * 0.25, 0.0], atol=1e-7)
    step = WarmupSchedule(0.1, total_steps=100, kind="step", boundaries=[30, 60])
    np.testing.assert_allclose(values(step, [29, 30, 59, 60, 99]), [0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-5)
    np.testing.assert_allclose(values(WarmupSchedule(0.3, 10, kind="constant"), [0, 9]), [0.3, 0.3], rtol=1e-6)


def test_schedule_serialises_and_rejects_unknown_kind():
    schedule = WarmupSchedule(0.1, 50, warmup_steps=5, kind="step", boundaries=[20])
    again = WarmupSchedule(**schedule.get_config())
    np.testing.assert_allclose(values(again, range(50)), values(schedule, range(50)))
    with pytest.raises(KeyError, match="unknown lr_schedule 'cosin'; did you mean 'cosine'"):
        WarmupSchedule(0.1, 10, kind="cosin")


def test_lr_scaling_rules():
    assert scaled_lr(0.1, 512, 256, "linear") == pytest.approx(0.2)
    assert scaled_lr(0.1, 512, 128, "sqrt") == pytest.approx(0.2)
    assert scaled_lr(0.1, 512, 0, "linear") == 0.1
    assert scaled_lr(0.1, 512, 256, "none") == 0.1
    with pytest.raises(ValueError, match="train.lr_scaling"):
        scaled_lr(0.1, 512, 256, "cubic")
