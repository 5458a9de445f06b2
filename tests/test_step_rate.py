"""The worker's smoothed speed (worker/progress.py): exact on a steady loop, the EMA's α on a
change of pace, independent of the sampling period, and reset by a rewind; and the window mean
of the loss between two heartbeats."""

from __future__ import annotations

import math

import pytest

from worker.progress import StepRate, WindowMean


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_steady_loop_reads_its_exact_rate() -> None:
    clock = Clock()
    rate = StepRate(time_constant_s=20.0, clock=clock)
    assert rate.sample() == (None, None)
    for step in range(0, 101):
        clock.now = 100.0 + step * 0.25
        rate.report(step)
        if step % 8 == 0:
            _, speed = rate.sample()
    assert rate.sample()[0] == 100
    assert speed == pytest.approx(4.0)


def test_the_first_sample_measures_from_the_first_step_not_the_start() -> None:
    clock = Clock()
    rate = StepRate(clock=clock)
    clock.now += 30.0  # building the flow, loading the data
    rate.report(1)
    clock.now += 1.0
    rate.report(6)
    assert rate.sample() == (6, pytest.approx(5.0))


def test_a_change_of_pace_moves_by_the_time_constant_weight() -> None:
    clock = Clock()
    rate = StepRate(time_constant_s=10.0, clock=clock)
    rate.report(0)
    rate.sample()
    clock.now += 2.0
    rate.report(20)  # 10 steps/s
    assert rate.sample() == (20, pytest.approx(10.0))
    clock.now += 5.0
    rate.report(30)  # 2 steps/s over 5 s
    alpha = 1.0 - math.exp(-5.0 / 10.0)
    assert rate.sample() == (30, pytest.approx(10.0 + alpha * (2.0 - 10.0)))


def test_the_weight_does_not_depend_on_how_often_it_is_sampled() -> None:
    """Ten samples 1 s apart move the average as far as one sample 10 s later."""
    speeds = []
    for period in (1.0, 10.0):
        clock = Clock()
        rate = StepRate(time_constant_s=5.0, clock=clock)
        rate.report(0)
        rate.sample()
        clock.now += 1.0
        rate.report(8)  # 8 steps/s
        rate.sample()
        step = 8
        for _ in range(int(10.0 / period)):
            clock.now += period
            step += int(2 * period)  # 2 steps/s from here
            rate.report(step)
            rate.sample()
        speeds.append(rate.sample()[1])
    expected = 2.0 + (8.0 - 2.0) * math.exp(-10.0 / 5.0)
    assert speeds == [pytest.approx(expected), pytest.approx(expected)]


def test_a_rewind_restarts_the_measurement_and_a_bad_constant_is_refused() -> None:
    clock = Clock()
    rate = StepRate(clock=clock)
    rate.report(50)
    rate.sample()
    clock.now += 1.0
    rate.report(10)
    assert rate.sample() == (10, None)
    clock.now += 2.0
    rate.report(16)
    assert rate.sample() == (16, pytest.approx(3.0))
    with pytest.raises(ValueError, match="time_constant_s"):
        StepRate(time_constant_s=0.0)


def test_the_window_mean_covers_the_finite_values_since_the_last_take() -> None:
    window = WindowMean()
    assert window.take() is None
    for value in (1.0, 2.0, math.nan, 6.0, math.inf):
        window.add(value)
    assert window.take() == pytest.approx(3.0)
    assert window.take() is None
    window.add(-0.5)
    assert window.take() == -0.5
