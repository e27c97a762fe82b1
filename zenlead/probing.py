"""The prober pool: probes each Service's leader and candidates and keeps their verdicts.

The reconciler calls `Pool.ensure(key, config, targets)` on every reconcile of a Service with a
probe configured: targets (pod UID -> IP, port, leader or not) are started or stopped to match,
so the pool probes exactly the current leader and its candidates, only at IPs of pods the
Service selects, and drops targets with their pods. `Pool.run` hosts one task per target:

- a random initial delay over one interval (no thundering herd at start-up), then probes every
  interval with +-10 % jitter: the leader every ``interval``, candidates every
  ``candidate interval``, and anyone with a failure streak every ``fast interval``; when the
  leader's first probe fails its candidates are probed at once, then at the fast interval
  while it keeps failing (for at most 30 s), so a successor is proven before it is needed;
- one probe in flight per target (the loop awaits each check), a global cap on probes in flight;
- verdicts with hysteresis: a pod is *up* after its first success (or after ``rise`` successes
  once down), *down* after ``fall`` consecutive network/timeout failures or one explicit
  negative answer (HTTP status, NOT_SERVING, expect mismatch, config error);
- with ``detector: phi``, also *down* once it has been silent for longer than its own response
  times make probable (`zenlead.phi`): the first probe's deadline is the silence ``t*`` where
  phi reaches the threshold; a timeout there is a *suspicion*, and the pod is down when a
  second probe, sent at once on a fresh connection, times out too with
  ``max(t*, acceptable pause)`` passed since the first was sent. A pod without enough history,
  or so noisy that ``t*`` exceeds the timeout, is judged by the fixed rules alone; a timeout
  that fired late (our own event loop stalled, so the silence may be ours) never makes a pod
  down early;
- checkers that push (gRPC Watch) feed the same verdicts between polls.

Every verdict change calls `on_change`, which the controller uses to record the failure time of
a leader and to enqueue the Service. Probe counts and durations go to `metrics` by kind and
result only (no pod names: bounded cardinality).

Containment: each target's loop is supervised. Anything it raises (a checker factory, a probe,
a gRPC Watch, a verdict callback), including a ``CancelledError`` that a library raised on its
own rather than our cancel scope, is logged with its traceback, counted
(``zen_lead_probe_loop_restarts_total``) and the loop restarted with backoff (0.1 s doubling to
30 s); its siblings never notice. A crash is no evidence about the pod: its verdict stays as it
was. Targets survive a restart of `run` itself (the controller restarts the pool if it ever
ends): their loops start again, verdicts kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from typing import TYPE_CHECKING, Any, Protocol

import anyio

import probes
from zenlead import phi, tracing

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import TypeAlias

    from zenlead import metrics, model, probeconfig

    Observer: TypeAlias = Callable[[model.ServiceKey, str, "Health", "Health"], None]

__all__ = ("DOWN", "UNKNOWN", "UP", "Health", "Pool", "ProbeTarget", "Prober", "restarts")

log = logging.getLogger(__name__)

UNKNOWN, UP, DOWN = "unknown", "up", "down"
_IMMEDIATE = frozenset({probes.FailureClass.NEGATIVE, probes.FailureClass.CONFIG})
_UNANSWERED = frozenset({probes.FailureClass.NETWORK, probes.FailureClass.TIMEOUT})
_RESTART_MIN_SECONDS = 0.1
_RESTART_MAX_SECONDS = 30.0
_STABLE_SECONDS = 60.0
"""A loop that ran this long before crashing restarts from the shortest backoff again."""
_CHASE_SECONDS = 30.0
"""How long candidates are probed at the fast pace after their leader began failing."""
_MIN_BUDGET_SECONDS = 0.05
"""Shortest deadline the phi detector gives a probe (a tiny one would only raise suspicions)."""
_LATE_SECONDS = 0.05
"""A timeout that fired this late means our loop stalled: the silence may have been ours."""
_SILENT_PROBES = 2
"""Failed probes (so connections) a silence must span before the phi detector calls it down."""


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One pod to probe: its IP and resolved probe port, and whether it leads."""

    ip: str
    port: int
    leader: bool


def restarts(
    old: ProbeTarget,
    old_config: probeconfig.ProbeConfig,
    new: ProbeTarget,
    new_config: probeconfig.ProbeConfig,
) -> bool:
    """Tell whether a target changing from `old` to `new` starts afresh (verdict reset).

    A new address or a new probe is a different check: nothing learnt about the old one holds.
    A change of role (leader or candidate) keeps the verdict.
    """
    return old.ip != new.ip or old.port != new.port or old_config != new_config


@dataclasses.dataclass(frozen=True, slots=True)
class Health:
    """A pod's probe verdict.

    Attributes:
        state: ``unknown`` (not probed yet), ``up`` or ``down``.
        failures: Consecutive failed probes.
        successes: Consecutive passed probes.
        first_failure_at: Monotonic time the first failed probe of the current streak ended
            (the first evidence of failure), or None.
        detail: Text of the last result.
        last_ok_at: Monotonic time the last passing probe ended, or None.
        failure: Class of the last failed probe of the current streak (None after a pass).

    """

    state: str = UNKNOWN
    failures: int = 0
    successes: int = 0
    first_failure_at: float | None = None
    detail: str = "not probed yet"
    last_ok_at: float | None = None
    failure: probes.FailureClass | None = None

    @property
    def unreachable(self) -> bool:
        """True when the pod is down for lack of an answer (network error or timeout).

        Only such failures can be our own network's doing: an explicit bad answer (a status,
        NOT_SERVING, an expect mismatch) proves the path to the pod works.
        """
        return self.state == DOWN and self.failure in _UNANSWERED


def judge(
    health: Health,
    result: probes.ProbeResult,
    config: probeconfig.ProbeConfig,
    at: float,
    *,
    silent: bool = False,
) -> Health:
    """Return the verdict after `result` (pure; see the module docstring for the rules).

    `silent`: the phi detector finds the pod's silence improbable; with at least two failed
    probes in a row (two connections) that makes it down before `fall` failures.
    """
    if result.ok:
        successes = health.successes + 1
        up = health.state != DOWN or successes >= config.rise
        return Health(UP if up else DOWN, 0, successes, None, result.detail or "ok", at)
    failures = health.failures + 1
    first = health.first_failure_at if health.first_failure_at is not None else at
    down = result.failure in _IMMEDIATE or failures >= config.fall
    down = down or (silent and failures >= _SILENT_PROBES)
    state = DOWN if down else health.state
    detail = f"{result.failure}: {result.detail}" if result.failure else result.detail
    return Health(state, failures, 0, first, detail, health.last_ok_at, result.failure)


class _Wake:
    """A pause that another task can cut short (a leader promoted, a suspicion to check).

    One future and one timer per pause, and no cancellation: an anyio cancel scope that
    expires raises and catches an exception, which at thousands of probes a second was a
    measurable share of the prober's CPU. A `set` while nobody pauses makes the next pause
    return at once; one during a pause ends it.
    """

    __slots__ = ("_pending", "_waiter")

    def __init__(self) -> None:
        self._pending = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        else:
            self._pending = True

    async def pause(self, seconds: float) -> None:
        if self._pending:
            self._pending = False
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(seconds, _settle, waiter)
        self._waiter = waiter
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
            self._pending = False


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclasses.dataclass
class _Entry:
    key: model.ServiceKey
    uid: str
    target: ProbeTarget
    config: probeconfig.ProbeConfig
    health: Health = dataclasses.field(default_factory=Health)
    scope: anyio.CancelScope | None = None  # The running loop's scope (None: not running).
    stopped: bool = False
    wake: _Wake = dataclasses.field(default_factory=_Wake)
    notify: bool = False  # Report the next result even if the verdict stays the same.
    last_push: tuple[bool, probes.FailureClass | None] | None = None
    history: phi.History = dataclasses.field(default_factory=phi.History)
    streak_sent_at: float | None = None  # Loop time the streak's first failed probe was sent.
    suspected: bool = False  # The phi detector's first deadline passed unanswered.


@dataclasses.dataclass(frozen=True, slots=True)
class _PhiRule:
    """The phi detector's limits for one probe: first deadline and silence that means down."""

    first: float
    silence: float
    limit: float


def _phi_rule(entry: _Entry) -> _PhiRule | None:
    """Return the phi limits for `entry` now, or None: the fixed rules apply alone."""
    config = entry.config
    if config.detector != "phi":
        return None
    limit = entry.history.limit(config.phi_threshold)
    if limit is None or limit >= config.timeout_seconds:
        return None  # No history yet, or a pod this noisy: nothing to gain over the fixed rules.
    silence = min(max(limit, config.phi_pause_seconds), config.fixed_silence_seconds)
    return _PhiRule(max(limit, _MIN_BUDGET_SECONDS), silence, limit)


def _budget(entry: _Entry, rule: _PhiRule | None, start: float) -> float:
    """Return the seconds probe `start`ed now may take."""
    timeout = entry.config.timeout_seconds
    if rule is None:
        return timeout
    budget = rule.first
    if entry.health.failures and entry.streak_sent_at is not None:
        # In a streak: wait out the rest of the silence the rule needs.
        budget = max(budget, entry.streak_sent_at + rule.silence - start)
    return min(budget, timeout)


class Prober(Protocol):
    """What the reconciler needs of a prober pool, in this process (`Pool`) or another."""

    def ensure(
        self,
        key: model.ServiceKey,
        config: probeconfig.ProbeConfig,
        targets: Mapping[str, ProbeTarget],
    ) -> None:
        """Probe exactly `targets` (pod UID -> target) for `key` with `config`."""

    def refresh(self, key: model.ServiceKey, uids: set[str]) -> None:
        """Probe `uids` of `key` now and report their next result even if unchanged."""

    def forget(self, key: model.ServiceKey) -> None:
        """Stop probing every pod of `key`."""

    def forget_all(self) -> None:
        """Stop every probe."""

    def health(self, key: model.ServiceKey) -> dict[str, Health]:
        """Return the current verdict of each probed pod of `key`."""


class Pool:
    """Probe loops for every target of every Service with a probe configured."""

    def __init__(
        self,
        *,
        on_change: Observer,
        metrics_: metrics.Metrics,
        max_in_flight: int = 256,
        probers: Mapping[str, probes.ProberFactory] | None = None,
        on_health: Observer | None = None,
    ) -> None:
        """Call `on_change(key, pod_uid, old, new)` on verdict changes; cap probes in flight.

        `on_health` (optional) hears every new `Health`, changed verdict or not, before
        `on_change` does: a pool in another process mirrors verdicts through it.
        """
        self._on_change = on_change
        self._on_health = on_health
        self._metrics = metrics_
        self._limiter = asyncio.Semaphore(max_in_flight)  # No await while below the cap.
        self._counted: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._probers = probers if probers is not None else probes.PROBERS
        self._entries: dict[model.ServiceKey, dict[str, _Entry]] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    @property
    def running(self) -> bool:
        """True while `run` hosts the probe loops."""
        return self._tg is not None

    async def run(self) -> None:
        """Host the probe loops until cancelled (restarting those of existing targets)."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for entries in self._entries.values():
                    for entry in entries.values():
                        self._start(entry)
                await anyio.sleep_forever()
        finally:
            self._tg = None

    def ensure(
        self,
        key: model.ServiceKey,
        config: probeconfig.ProbeConfig,
        targets: Mapping[str, ProbeTarget],
        *,
        seed: Mapping[str, Health] | None = None,
    ) -> None:
        """Probe exactly `targets` (pod UID -> target) for `key` with `config`.

        `seed` gives new targets a verdict to start from (a restarted prober process resumes).
        """
        current = self._entries.setdefault(key, {})
        for uid in list(current):
            entry = current[uid]
            wanted = targets.get(uid)
            if wanted is None or restarts(entry.target, entry.config, wanted, config):
                _stop(entry)
                del current[uid]
            else:
                if wanted.leader and not entry.target.leader:
                    entry.wake.set()  # A new leader is probed at the leader's pace at once.
                entry.target = wanted
        for uid, target in targets.items():
            if uid not in current:
                entry = _Entry(key, uid, target, config, (seed or {}).get(uid, Health()))
                current[uid] = entry
                self._start(entry)
        if not current:
            del self._entries[key]
        self._metrics.probe_targets.set(sum(len(v) for v in self._entries.values()))

    def _start(self, entry: _Entry) -> None:
        """Start `entry`'s supervised loop if the pool runs (else `run` will, when it does)."""
        if self._tg is None:
            return
        try:
            self._tg.start_soon(self._supervise, entry)
        except RuntimeError:  # The task group ended under us; `run` restarts every target.
            log.exception("prober pool is not running; %s waits for its restart", entry.key)
            self._tg = None

    def refresh(self, key: model.ServiceKey, uids: set[str]) -> None:
        """Probe `uids` of `key` now and report their next result even if unchanged.

        Used before a failover: a candidate must have passed a probe *after* the leader
        started failing, so correlated failures (our own network) are seen before acting.
        """
        for uid in uids:
            entry = self._entries.get(key, {}).get(uid)
            if entry is not None and not entry.notify:
                entry.notify = True
                entry.wake.set()

    def forget(self, key: model.ServiceKey) -> None:
        """Stop probing every pod of `key`."""
        for entry in self._entries.pop(key, {}).values():
            _stop(entry)
        self._metrics.probe_targets.set(sum(len(v) for v in self._entries.values()))

    def forget_all(self) -> None:
        """Stop every probe (this replica stopped leading: it must not probe stale IPs)."""
        for key in list(self._entries):
            self.forget(key)

    def health(self, key: model.ServiceKey) -> dict[str, Health]:
        """Return the current verdict of each probed pod of `key`."""
        return {uid: e.health for uid, e in self._entries.get(key, {}).items()}

    async def _supervise(self, entry: _Entry) -> None:
        """Run `entry`'s probe loop until it is stopped, restarting it whenever it fails."""
        if entry.stopped:
            return
        backoff = _RESTART_MIN_SECONDS
        with anyio.CancelScope() as scope:
            entry.scope = scope
            while not entry.stopped:
                started = time.monotonic()
                try:
                    await self._loop(entry)
                except Exception as exc:  # noqa: BLE001 - contained: siblings carry on.
                    self._crashed(entry, exc)
                except asyncio.CancelledError as exc:
                    if scope.cancel_called or _cancelling():
                        raise  # Ours: the target was dropped or the pool is stopping.
                    self._crashed(entry, exc)  # A library's own cancellation: contained.
                if time.monotonic() - started > _STABLE_SECONDS:
                    backoff = _RESTART_MIN_SECONDS
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, _RESTART_MAX_SECONDS)

    def _crashed(self, entry: _Entry, exc: BaseException) -> None:
        self._metrics.probe_loop_restarts.labels(entry.config.kind).inc()
        log.error(
            "probe loop %s %s/%s crashed; restarting it",
            entry.config.kind,
            entry.key,
            entry.target.ip,
            exc_info=exc,
        )

    async def _loop(self, entry: _Entry) -> None:
        factory = self._probers[entry.config.kind]
        checker = factory(probes.Target(entry.target.ip, entry.target.port), entry.config.spec)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(checker.watch, lambda r: self._record(entry, r, pushed=True))
                await self._pause(entry, random.uniform(0, self._interval(entry)))  # noqa: S311
                while True:
                    await self._probe_once(entry, checker)
                    jitter = random.uniform(0.9, 1.1)  # noqa: S311 - not cryptographic
                    await self._pause(entry, self._interval(entry) * jitter)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await checker.aclose()

    @staticmethod
    async def _pause(entry: _Entry, seconds: float) -> None:
        """Sleep `seconds`, or less if the target is promoted to leader meanwhile."""
        await entry.wake.pause(seconds)

    async def _probe_once(self, entry: _Entry, checker: probes.Checker) -> None:
        loop = asyncio.get_running_loop()  # Its clock is anyio's, for less per call.
        async with self._limiter:
            start = loop.time()
            began = time.perf_counter()  # The loop's clock may tick in whole ms (uvloop).
            rule = _phi_rule(entry)
            deadline = start + _budget(entry, rule, start)
            with tracing.span(f"probe {entry.config.kind}", target=entry.target.ip) as span:
                result = await checker.check(deadline=deadline)
                if span is not None:
                    span.set_attribute("zenlead.result", str(result.failure or "success"))
            end = loop.time()
            elapsed = time.perf_counter() - began
        outcome = "success" if result.ok else str(result.failure)
        counter, histogram = self._series(entry.config.kind, outcome)
        counter.inc()
        histogram.observe(elapsed)
        if result.ok:
            entry.history.add(elapsed)
        silent = False
        if rule is not None and result.failure is probes.FailureClass.TIMEOUT:
            result, silent = Pool._suspect(entry, result, rule, start, end - deadline)
        if entry.health.failures == 0:
            entry.streak_sent_at = start
        self._record(entry, result, pushed=False, silent=silent)

    def _series(self, kind: str, outcome: str) -> tuple[Any, Any]:
        """Return the probe counter and histogram children of (kind, outcome), looked up once."""
        found = self._counted.get((kind, outcome))
        if found is None:
            found = (
                self._metrics.probes.labels(kind, outcome),
                self._metrics.probe_duration.labels(kind, outcome),
            )
            self._counted[kind, outcome] = found
        return found

    @staticmethod
    def _suspect(
        entry: _Entry,
        result: probes.ProbeResult,
        rule: _PhiRule,
        start: float,
        late: float,
    ) -> tuple[probes.ProbeResult, bool]:
        """Judge a phi-timed timeout: raise a suspicion, or find the silence improbable."""
        began = entry.streak_sent_at if entry.health.failures else None
        began = start if began is None else began
        silence = anyio.current_time() - began
        if entry.health.failures == 0:
            entry.suspected = True
            entry.wake.set()  # Re-probe at once, on a fresh connection: the silence goes on.
        if late > _LATE_SECONDS or silence < rule.silence - 0.001:
            return result, False  # Our own stall, or not silent long enough yet.
        detail = (
            f"silent for {silence * 1000:.0f} ms; improbable for this pod "
            f"(phi {entry.config.phi_threshold:g} at {rule.limit * 1000:.0f} ms)"
        )
        return probes.ProbeResult.fail(result.failure or probes.FailureClass.TIMEOUT, detail), True

    def _record(
        self, entry: _Entry, result: probes.ProbeResult, *, pushed: bool, silent: bool = False
    ) -> None:
        if pushed and result.failure is probes.FailureClass.NETWORK:
            return  # A broken Watch stream is no evidence; the periodic check decides.
        if pushed:
            status = (result.ok, result.failure)
            if status == entry.last_push:
                return  # A pod repeating its status costs nothing (nor can it flood us).
            entry.last_push = status
        old = self._judge(entry, result, silent=silent)
        if not result.ok and old.failures == 0:
            log.info(
                "probe %s %s/%s: failed (%s)",
                entry.config.kind,
                entry.key,
                entry.target.ip,
                entry.health.detail,
            )
        notify = entry.notify and not pushed
        if notify:
            entry.notify = False
        # A leader's first failure is reported too, and its candidates are probed at once and
        # then at the fast pace while it fails, so a successor is proven without waiting.
        first_failure = entry.target.leader and not result.ok and old.failures == 0
        if first_failure:
            self._wake_candidates(entry)
        notify = notify or first_failure
        changed = entry.health.state != old.state
        if changed:
            log.info(
                "probe %s %s/%s: %s -> %s (%s)",
                entry.config.kind,
                entry.key,
                entry.target.ip,
                old.state,
                entry.health.state,
                entry.health.detail,
            )
        if changed or notify:
            try:
                self._on_change(entry.key, entry.uid, old, entry.health)
            except BaseException:
                entry.notify = True  # The change was not delivered: report the next result.
                raise

    def _judge(self, entry: _Entry, result: probes.ProbeResult, *, silent: bool) -> Health:
        """Apply `result` to `entry`'s verdict; tell `on_health`; return the verdict before."""
        old = entry.health
        entry.health = judge(old, result, entry.config, time.monotonic(), silent=silent)
        self._settle_suspicion(entry, old)
        if self._on_health is not None:
            self._on_health(entry.key, entry.uid, old, entry.health)
        return old

    def _settle_suspicion(self, entry: _Entry, old: Health) -> None:
        """Count how a phi suspicion ended: the pod answered, or it was found down."""
        if not entry.suspected:
            return
        if entry.health.failures == 0:
            outcome = "cleared"
        elif entry.health.state == DOWN and old.state != DOWN:
            outcome = "confirmed"
        else:
            return
        entry.suspected = False
        self._metrics.probe_suspicions.labels(entry.config.kind, outcome).inc()

    def _interval(self, entry: _Entry) -> float:
        config = entry.config
        if entry.health.failures and entry.health.state != DOWN:
            return config.fast_interval_seconds
        if entry.target.leader:
            return config.interval_seconds
        if self.leader_failing(entry.key):
            # The leader may be about to go: find a proven successor at the fast pace instead
            # of a candidate interval later (a role swap's new primary must pass `rise` times).
            return config.fast_interval_seconds
        return config.candidate_interval_seconds

    def leader_failing(self, key: model.ServiceKey) -> bool:
        """Tell whether `key`'s leader has been failing for less than `_CHASE_SECONDS`."""
        for other in self._entries.get(key, {}).values():
            if other.target.leader and other.health.failures:
                first = other.health.first_failure_at
                return first is not None and time.monotonic() - first < _CHASE_SECONDS
        return False

    def _wake_candidates(self, entry: _Entry) -> None:
        """Probe the candidates of `entry`'s Service now (its leader just began failing)."""
        for other in self._entries.get(entry.key, {}).values():
            if other is not entry:
                other.wake.set()


def _stop(entry: _Entry) -> None:
    entry.stopped = True
    if entry.scope is not None:
        entry.scope.cancel()


def _cancelling() -> bool:
    """Tell whether the current task is being cancelled by a cancel scope (not by a library)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
