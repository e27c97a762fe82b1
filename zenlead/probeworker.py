"""The prober process: a `probing.Pool` on an event loop and a GIL of its own.

Why a process: in one process the prober shares the GIL with the informers (JSON decoding,
relists of thousands of objects), the reconcile workers and the /metrics renderer, and a probe
whose answer arrived in time is reported as a timeout when the loop gets the GIL back too late
(bench/scale.py shows the numbers). Here nothing else runs, so probe timing depends only on the
pods and the machine.

The controller (`probehost.RemotePool`) starts ``python -m zenlead.probeworker`` and talks to it
over its stdin and stdout in `frames`:

- in: ``ensure`` (a Service's config and targets, each target's generation, verdicts to resume
  from), ``refresh``, ``forget``, ``forget_all``;
- out: ``ready`` once, then ``change`` for each verdict change the controller must act on (the
  pool's ``on_change``), ``health`` whenever a verdict moves in a way a decision could see (a
  failure, a new state, a rise count while down; every result while the Service's leader is
  failing, so a failover can trust fresh successes of its candidates), and ``stats`` (the probe
  metric families) every second and before a ``change`` (so whoever sees a verdict change in
  the metrics also sees the probes behind it), which also proves this loop turns.

Messages about a target carry the generation the controller gave it, so a late report about a
target that has since been replaced is dropped there. The process ends when its stdin closes
(the controller is gone) and ignores SIGINT (a terminal's Ctrl-C is for the controller). It runs
on uvloop where installed: at 3,000 targets that cut its CPU per probe by a quarter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio

from zenlead import frames, logs, metrics, probing

if TYPE_CHECKING:
    from collections.abc import Callable

    from zenlead import model

__all__ = ("STATS_SECONDS", "main", "serve")

log = logging.getLogger(__name__)

STATS_SECONDS = 1.0
_FRESH_SECONDS = 0.1
"""A verdict change sends the metrics first unless they were sent this recently."""


def _summary(health: probing.Health) -> tuple[Any, ...]:
    """Return what of `health` a decision can see outside a leader's failure."""
    rising = health.successes if health.state == probing.DOWN else 0
    return (health.state, health.failures, health.first_failure_at, health.failure, rising)


class _Worker:
    """Applies the controller's messages to the pool and reports back."""

    def __init__(self, writer: asyncio.StreamWriter, max_in_flight: int) -> None:
        self._writer = writer
        self.metrics = metrics.Metrics()
        self.gens: dict[model.ServiceKey, dict[str, int]] = {}
        self.stats_sent_at = 0.0
        self._queued: list[bytes] = []
        self.pool = probing.Pool(
            on_change=self._changed,
            on_health=self._moved,
            metrics_=self.metrics,
            max_in_flight=max_in_flight,
        )

    def send(self, message: tuple[Any, ...]) -> None:
        """Queue `message`; everything queued in one loop iteration is written at once."""
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        self._queued.append(frames.encode(message))

    def _flush(self) -> None:
        self._writer.write(b"".join(self._queued))
        self._queued.clear()

    def apply(self, message: tuple[Any, ...]) -> None:
        kind, *args = message
        if kind == "ensure":
            key, config, targets, gens, seed = args
            self.gens[key] = gens
            self.pool.ensure(key, config, targets, seed=seed)
            if not targets:
                self.gens.pop(key, None)
        elif kind == "refresh":
            self.pool.refresh(args[0], set(args[1]))
        elif kind == "forget":
            self.gens.pop(args[0], None)
            self.pool.forget(args[0])
        elif kind == "forget_all":
            self.gens.clear()
            self.pool.forget_all()
        else:
            raise frames.FrameError(f"unknown message {kind!r}")

    def send_stats(self) -> None:
        families = [
            family
            for name in metrics.PROBER_METRICS
            for family in getattr(self.metrics, name).collect()
        ]
        self.send(("stats", families))
        self.stats_sent_at = time.monotonic()

    def _gen(self, key: model.ServiceKey, uid: str) -> int:
        return self.gens.get(key, {}).get(uid, 0)

    def _changed(
        self, key: model.ServiceKey, uid: str, old: probing.Health, new: probing.Health
    ) -> None:
        if time.monotonic() - self.stats_sent_at > _FRESH_SECONDS:
            self.send_stats()  # Whoever sees the change also sees the probes that led to it.
        self.send(("change", key, uid, self._gen(key, uid), old, new))

    def _moved(
        self, key: model.ServiceKey, uid: str, old: probing.Health, new: probing.Health
    ) -> None:
        if _summary(old) != _summary(new) or self.pool.leader_failing(key):
            self.send(("health", key, uid, self._gen(key, uid), new))


async def serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, max_in_flight: int
) -> None:
    """Run the pool for the controller at the other end of `reader`/`writer` until EOF."""
    worker = _Worker(writer, max_in_flight)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.pool.run)
        tg.start_soon(_report, worker)
        worker.send(("ready", os.getpid()))
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                worker.apply(await frames.read(reader))
        tg.cancel_scope.cancel()


async def _report(worker: _Worker) -> None:
    while True:
        worker.send_stats()
        await worker._writer.drain()  # noqa: SLF001 - the worker's own stream.
        await anyio.sleep(STATS_SECONDS)


async def _pipes(out: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Return asyncio streams over this process's stdin and `out` (the original stdout)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=frames.MAX_FRAME_BYTES)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, out)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer


async def _main(out: Any, max_in_flight: int) -> None:
    reader, writer = await _pipes(out)
    await serve(reader, writer, max_in_flight=max_in_flight)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m zenlead.probeworker``."""
    parser = argparse.ArgumentParser(prog="zenlead.probeworker")
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="text")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The frames get the original stdout to themselves; a stray print goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logs.configure(level=args.log_level, fmt=args.log_format)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_main(out, args.max_in_flight))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return uvloop's loop factory (a quarter less CPU per probe), or None: asyncio's own."""
    try:
        import uvloop  # noqa: PLC0415 - optional where it has no wheel (Windows).
    except ImportError:
        log.warning("uvloop is not installed; probing on asyncio's event loop (more CPU)")
        return None
    return uvloop.new_event_loop


if __name__ == "__main__":
    main()
