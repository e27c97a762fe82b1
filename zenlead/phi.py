"""Phi-accrual suspicion over one pod's own probe response times (pure, no I/O).

The fixed detector waits the same silence for every pod: ``timeout + (fall - 1) * (fast
interval + timeout)``, 950 ms by default. A pod that always answers in 2 ms is, after 300 ms
of silence, almost certainly hung; a pod whose answers often take 150 ms is not. The phi-accrual
detector (Hayashibara et al., 2004) turns that into a rule: keep the pod's recent response times,
and call a silence of ``t`` suspicious when ``phi(t) = -log10(P(answer later than t))`` reaches a
threshold (8: a healthy pod this slow about once in 10^8 probes).

Response times are modelled as lognormal (the usual shape of service latency: a tight body and
a long right tail), fitted from the mean and standard deviation of their logarithms over the
last `WINDOW` successful probes. The spread has a floor (`MIN_LOG_SPREAD`), so a pod with
near-constant latency is not held to a silence of exactly its median. Until `MIN_SAMPLES`
answers are known there is no history to judge by and `History.limit` returns None: the fixed
rules apply.

`History.limit` answers with the silence ``t*`` where phi reaches the threshold; the prober
pool uses it as the first probe's deadline and, bounded below by the acceptable pause, as the
silence after which a pod is down (see `zenlead.probing`).
"""

from __future__ import annotations

import collections
import math
import statistics

__all__ = ("MIN_LOG_SPREAD", "MIN_SAMPLES", "WINDOW", "History", "phi")

WINDOW = 100
"""Successful probe durations kept per pod (about 50 s of a leader's probes)."""
MIN_SAMPLES = 20
"""Durations needed before the history is trusted."""
MIN_LOG_SPREAD = 0.1
"""Floor of the standard deviation of ln(duration): about +-10 % of jitter is always assumed."""
_SHORTEST = 1e-5
"""Durations are clamped to 10 us before taking logs (a clock may say 0)."""
_REFIT_EVERY = WINDOW
"""Running sums are recomputed from scratch this often, so float error cannot build up."""


class History:
    """The last `WINDOW` successful probe durations of one pod, with a lognormal fit."""

    def __init__(self) -> None:
        """Start empty (no limit until `MIN_SAMPLES` durations are added)."""
        self._logs: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._sum = 0.0
        self._squares = 0.0
        self._adds = 0

    def __len__(self) -> int:
        """Return how many durations are kept."""
        return len(self._logs)

    def add(self, seconds: float) -> None:
        """Record the duration of a successful probe."""
        value = math.log(max(seconds, _SHORTEST))
        if len(self._logs) == WINDOW:
            dropped = self._logs[0]
            self._sum -= dropped
            self._squares -= dropped * dropped
        self._logs.append(value)
        self._sum += value
        self._squares += value * value
        self._adds += 1
        if self._adds % _REFIT_EVERY == 0:
            self._sum = math.fsum(self._logs)
            self._squares = math.fsum(v * v for v in self._logs)

    def fit(self) -> tuple[float, float] | None:
        """Return (mean, spread) of ln(duration), or None before `MIN_SAMPLES` durations."""
        n = len(self._logs)
        if n < MIN_SAMPLES:
            return None
        mean = self._sum / n
        variance = max(self._squares / n - mean * mean, 0.0)
        return mean, max(math.sqrt(variance), MIN_LOG_SPREAD)

    def limit(self, threshold: float) -> float | None:
        """Return the silence (seconds) at which phi reaches `threshold`, or None (no history).

        That is the ``1 - 10**-threshold`` quantile of the fitted lognormal.
        """
        fitted = self.fit()
        if fitted is None:
            return None
        mean, spread = fitted
        return math.exp(mean + _z(threshold) * spread)

    def phi(self, silence: float) -> float | None:
        """Return phi for `silence` seconds without an answer, or None (no history)."""
        fitted = self.fit()
        return None if fitted is None else phi(silence, *fitted)


def phi(silence: float, mean: float, spread: float) -> float:
    """Return ``-log10(P(duration > silence))`` for a lognormal of ln-mean and ln-spread."""
    if silence <= 0:
        return 0.0
    z = (math.log(silence) - mean) / spread
    tail = 0.5 * math.erfc(z / math.sqrt(2))
    return math.inf if tail <= 0 else -math.log10(tail)


def _z(threshold: float) -> float:
    """Return the standard normal quantile whose upper tail is ``10**-threshold``."""
    return -statistics.NormalDist().inv_cdf(10.0**-threshold)
