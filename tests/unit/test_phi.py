"""The phi-accrual model: the fit, the silence limit, and their bounds (pure)."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zenlead import phi

durations = st.lists(
    st.floats(min_value=1e-4, max_value=30.0, allow_nan=False),
    min_size=phi.MIN_SAMPLES,
    max_size=250,
)


def _history(values: list[float]) -> phi.History:
    history = phi.History()
    for value in values:
        history.add(value)
    return history


def test_no_limit_before_enough_history() -> None:
    """With fewer than MIN_SAMPLES answers the detector has nothing to judge by."""
    history = _history([0.002] * (phi.MIN_SAMPLES - 1))
    assert history.limit(8.0) is None
    assert history.phi(1.0) is None
    history.add(0.002)
    assert history.limit(8.0) is not None


def test_constant_latency_keeps_a_spread() -> None:
    """A pod that always takes 2 ms is allowed exp(z * 0.1) of it, not exactly 2 ms."""
    limit = _history([0.002] * 50).limit(8.0)
    z = -statistics.NormalDist().inv_cdf(1e-8)
    assert limit == pytest.approx(0.002 * math.exp(z * phi.MIN_LOG_SPREAD))
    assert 0.0034 < (limit or 0) < 0.0036


def test_long_tail_raises_the_limit_past_a_fixed_timeout() -> None:
    """A lognormal pod with median 10 ms and p99 150 ms is allowed seconds, not milliseconds."""
    sigma = math.log(15) / statistics.NormalDist().inv_cdf(0.99)
    quantiles = [(i + 0.5) / 100 for i in range(100)]
    values = [0.01 * math.exp(sigma * statistics.NormalDist().inv_cdf(q)) for q in quantiles]
    limit = _history(values).limit(8.0)
    assert limit is not None
    assert limit > 1.0


@given(durations)
def test_the_window_keeps_the_last_answers(values: list[float]) -> None:
    """The fit is that of the last WINDOW durations, however many were added."""
    kept = [math.log(v) for v in values[-phi.WINDOW :]]
    mean, spread = _history(values).fit() or (math.nan, math.nan)
    assert mean == pytest.approx(statistics.fmean(kept), abs=1e-6)
    assert spread == pytest.approx(max(statistics.pstdev(kept), phi.MIN_LOG_SPREAD), abs=1e-5)


@given(
    durations, st.floats(min_value=1.0, max_value=16.0), st.floats(min_value=1.0, max_value=16.0)
)
def test_limit_grows_with_the_threshold(values: list[float], low: float, high: float) -> None:
    """A stricter threshold never shortens the silence allowed, and phi at the limit is it."""
    low, high = sorted((low, high))
    history = _history(values)
    low_limit, high_limit = history.limit(low), history.limit(high)
    assert low_limit is not None
    assert high_limit is not None
    assert low_limit <= high_limit * (1 + 1e-9)
    assert (
        low_limit > math.exp(statistics.fmean(math.log(v) for v in values[-phi.WINDOW :])) * 0.999
    )
    assert history.phi(low_limit) == pytest.approx(low, rel=1e-3)


@given(st.floats(min_value=-10, max_value=10), st.floats(min_value=0.1, max_value=5))
def test_phi_never_decreases_with_silence(mean: float, spread: float) -> None:
    """A longer silence is never less suspicious; no silence is not suspicious at all."""
    silences = [0.0, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0]
    values = [phi.phi(s, mean, spread) for s in silences]
    assert values[0] == 0.0
    assert values == sorted(values)
