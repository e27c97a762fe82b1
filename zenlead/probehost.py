"""The controller's side of the prober process: `RemotePool`, a `probing.Prober` by proxy.

`RemotePool` keeps what the reconciler asked for (each Service's probe config and targets) and
a mirror of the verdicts the prober process reports, so `ensure`, `refresh`, `forget` and
`health` stay synchronous and cheap, as with the in-process `probing.Pool`. `run` starts
``python -m zenlead.probeworker`` (see there for the protocol), replays every Service to it with
the mirrored verdicts as the starting point, then reads its reports until it exits:

- ``change`` updates the mirror and calls ``on_change`` (the failover path: verdict -> queue);
- ``health`` updates the mirror;
- ``stats`` replaces the probe metric families that ``/metrics`` serves.

Each target gets a generation when it starts (a new pod, a new address or a new probe config,
`probing.restarts`); a report carrying an older generation is about a target since replaced
and is dropped, so a late verdict can never land on a new pod.

Containment: a prober process that exits, or sends no stats for `stall_seconds` (its loop is
stuck), is killed and `run` raises; the controller's supervisor starts it again with backoff
and the replay resumes every target from its last verdict. While it is down ``/healthz`` says
so (`running` is False) and routing keeps its last verdicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
from typing import TYPE_CHECKING, Any

import anyio

from zenlead import errors, frames, probing

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from zenlead import metrics, model, probeconfig

__all__ = ("ProberGoneError", "RemotePool")

log = logging.getLogger(__name__)

_READY_SECONDS = 30.0
"""How long a new prober process may take to import and start (grpc is slow to import)."""
_EXIT_SECONDS = 2.0


class ProberGoneError(errors.ZenleadError):
    """The prober process exited or stopped reporting."""


class RemotePool:
    """Probes through a child process; same interface as `probing.Pool`."""

    def __init__(
        self,
        *,
        on_change: probing.Observer,
        metrics_: metrics.Metrics,
        max_in_flight: int = 256,
        log_level: str = "info",
        log_format: str = "text",
        stall_seconds: float = 10.0,
        command: Sequence[str] | None = None,
    ) -> None:
        """Report verdict changes to `on_change`; serve the probe metrics through `metrics_`."""
        self._on_change = on_change
        self._metrics = metrics_
        self._command = (
            list(command)
            if command is not None
            else [
                sys.executable,
                "-m",
                "zenlead.probeworker",
                f"--max-in-flight={max_in_flight}",
                f"--log-level={log_level}",
                f"--log-format={log_format}",
            ]
        )
        self._stall_seconds = stall_seconds
        self._wanted: dict[
            model.ServiceKey, tuple[probeconfig.ProbeConfig, dict[str, probing.ProbeTarget]]
        ] = {}
        self._gens: dict[model.ServiceKey, dict[str, int]] = {}
        self._mirror: dict[model.ServiceKey, dict[str, probing.Health]] = {}
        self._counter = itertools.count(1)
        self._writer: asyncio.StreamWriter | None = None
        self._families: list[Any] | None = None
        self._pending: dict[model.ServiceKey, set[str]] = {}
        self._alive = False
        self.pid: int | None = None
        self.starts = 0
        metrics_.serve_prober_families(lambda: self._families)

    @property
    def running(self) -> bool:
        """True from starting a prober process until it is declared gone."""
        return self._alive

    # The probing.Prober interface --------------------------------------------------------------

    def ensure(
        self,
        key: model.ServiceKey,
        config: probeconfig.ProbeConfig,
        targets: Mapping[str, probing.ProbeTarget],
    ) -> None:
        """Probe exactly `targets` (pod UID -> target) for `key` with `config`."""
        wanted = dict(targets)
        prior = self._wanted.get(key)
        if prior == (config, wanted):
            return  # Reconciles repeat themselves; the pipe only carries changes.
        gens = self._gens.setdefault(key, {})
        mirror = self._mirror.setdefault(key, {})
        for uid in list(gens):
            new = wanted.get(uid)
            if (
                new is None
                or prior is None
                or probing.restarts(prior[1][uid], prior[0], new, config)
            ):
                del gens[uid]
                mirror.pop(uid, None)
        for uid in wanted:
            gens.setdefault(uid, next(self._counter))
        if wanted:
            self._wanted[key] = (config, wanted)
        else:
            self._drop(key)
        self._send(("ensure", key, config, wanted, dict(gens), {}))

    def refresh(self, key: model.ServiceKey, uids: set[str]) -> None:
        """Probe `uids` of `key` now and report their next result even if unchanged."""
        if self._writer is None:  # Sent with the replay, so the waiting Service hears back.
            self._pending.setdefault(key, set()).update(uids)
        self._send(("refresh", key, sorted(uids)))

    def forget(self, key: model.ServiceKey) -> None:
        """Stop probing every pod of `key`."""
        if key in self._wanted or key in self._gens:
            self._drop(key)
            self._send(("forget", key))

    def forget_all(self) -> None:
        """Stop every probe (this replica stopped leading)."""
        self._wanted.clear()
        self._gens.clear()
        self._mirror.clear()
        self._pending.clear()
        self._send(("forget_all",))

    def health(self, key: model.ServiceKey) -> dict[str, probing.Health]:
        """Return the last reported verdict of each probed pod of `key`."""
        mirror = self._mirror.get(key, {})
        return {uid: mirror.get(uid, probing.Health()) for uid in self._gens.get(key, {})}

    # The process -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run one prober process until it fails; raise `ProberGoneError` then."""
        self._alive = True  # Starting counts: /healthz must not flap while it imports.
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=frames.MAX_FRAME_BYTES,
            )
        except BaseException:
            self._alive = False
            raise
        assert proc.stdin is not None  # noqa: S101 - asked for above.
        assert proc.stdout is not None  # noqa: S101
        self.starts += 1
        try:
            await self._serve(proc.stdin, proc.stdout)
        finally:
            self._alive = False
            self._writer = None
            with anyio.CancelScope(shield=True):
                await _end(proc)

    async def _serve(self, stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader) -> None:
        hello = await self._next(stdout, _READY_SECONDS)
        if hello[0] != "ready":
            raise ProberGoneError(f"prober process said {hello[0]!r} instead of ready")
        self.pid = int(hello[1])
        self._writer = stdin
        for key, (config, wanted) in self._wanted.items():
            seed = dict(self._mirror.get(key, {}))
            self._send(("ensure", key, config, wanted, dict(self._gens[key]), seed))
        for key, uids in self._pending.items():
            if key in self._wanted:
                self._send(("refresh", key, sorted(uids)))
        self._pending.clear()
        log.info("prober process %d started with %d Services", self.pid, len(self._wanted))
        while True:
            self._handle(await self._next(stdout, self._stall_seconds))

    async def _next(self, stdout: asyncio.StreamReader, within: float) -> tuple[Any, ...]:
        # No task per frame (asyncio.wait_for would make one, and yield): frames already
        # buffered are handled back to back, so a Service never reconciles between two
        # verdicts that the prober reported together.
        try:
            async with asyncio.timeout(within):
                return await frames.read(stdout)
        except asyncio.IncompleteReadError:
            raise ProberGoneError("prober process exited") from None
        except TimeoutError:
            raise ProberGoneError(f"prober process silent for {within:.0f}s") from None

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "stats":
            self._families = message[1]
        elif kind == "health":
            _, key, uid, gen, new = message
            if self._current(key, uid, gen):
                self._mirror.setdefault(key, {})[uid] = new
        elif kind == "change":
            _, key, uid, gen, old, new = message
            if self._current(key, uid, gen):
                self._mirror.setdefault(key, {})[uid] = new
                try:
                    self._on_change(key, uid, old, new)
                except Exception:
                    log.exception("handling a verdict change of %s failed", key)
        else:
            raise ProberGoneError(f"prober process sent unknown message {kind!r}")

    def _current(self, key: model.ServiceKey, uid: str, gen: int) -> bool:
        return gen != 0 and self._gens.get(key, {}).get(uid) == gen

    def _drop(self, key: model.ServiceKey) -> None:
        self._pending.pop(key, None)
        self._wanted.pop(key, None)
        self._gens.pop(key, None)
        self._mirror.pop(key, None)

    def _send(self, message: tuple[Any, ...]) -> None:
        writer = self._writer
        if writer is None:
            return  # `run` replays everything to the next process.
        try:
            writer.write(frames.encode(message))
        except (OSError, RuntimeError):
            log.warning("prober process gone; %s waits for its restart", message[0])
            self._writer = None


async def _end(proc: asyncio.subprocess.Process) -> None:
    """Make sure `proc` is gone: close its stdin, then terminate, then kill."""
    if proc.stdin is not None:
        proc.stdin.close()
    for stop in (None, proc.terminate, proc.kill):
        if proc.returncode is not None:
            break
        if stop is not None:
            with contextlib.suppress(ProcessLookupError):
                stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), _EXIT_SECONDS)
    if proc.returncode not in {None, 0}:
        log.warning("prober process exited with %s", proc.returncode)
