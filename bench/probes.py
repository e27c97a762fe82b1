"""Benchmark: prober CPU per probe and scheduling lag at 300 to 3,000 loopback targets.

Run: ``.venv/bin/python -m bench.probes`` from the repository root (options:
``--targets 300,1000,3000 --seconds 10``), or ``make bench``.

For each kind (our HTTP prober, the naive httpx baseline, gRPC health Check, TCP ROLE/expect)
and each target count N, the bench starts N loopback servers on 127.0.0.1, spread over
``--server-procs`` separate processes at a lower priority (so this process measures only the
prober's own CPU, and its lag is its own), and builds one checker per target. Then every
target is probed about once a second: each target has its own task, a random phase in the first
second and +-10 % jitter on every interval, and each probe gets the pool's default 500 ms
deadline. After ``--warmup`` seconds (connections opened,
channels created) a window of ``--seconds`` is measured:

- CPU per probe: user + system time of this process (``getrusage``, all its threads, so grpc's
  own threads count) over the window, divided by the probes started in the window;
- probes/s achieved against N/s wanted, and failed probes;
- scheduling lag: how late each probe started against its schedule (p50, p99).

The naive baseline, measured in the same run, is one shared ``httpx.AsyncClient`` (default
limits) for all HTTP targets; its CPU per probe is reported as a ratio to our HTTP prober at the
same N. uvloop is used for both sides when it is installed (it is, as the prober process's
loop; the table's first line names the loop the run used).

Goal: at 3,000 HTTP targets once a second, <= 250 us CPU per probe and p99 lag <= 50 ms.
Prints a markdown table and rewrites the "probes" section of docs/benchmarks.md.

Internal: ``python -m bench.probes --serve KIND --count K`` is one server process; it prints
its ports as a JSON line and serves until its standard input closes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import pathlib
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
import typing
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from bench import report
from probes import grpc as grpc_probe
from probes import http, tcp, types

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

INTERVAL_SECONDS = 1.0
TIMEOUT_SECONDS = 0.5
GOAL_CPU_SECONDS = 250e-6
GOAL_P99_LAG_SECONDS = 0.050
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
REDIS_ROLE = b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"
SERVER_KIND = {"http": "http", "httpx": "http", "grpc": "grpc", "tcp": "tcp"}
SERVER_NICENESS = 10
TCP_SPEC = types.TcpSpec(send=b"ROLE\r\n", expect=rb"\$6\r\nmaster\r\n")


# --- Server processes -----------------------------------------------------------------------


class _HttpServe(asyncio.Protocol):
    """Answers every request on a connection with a fixed 200 (GET, no request body)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = typing.cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        pending = self._pending + data
        count = pending.count(b"\r\n\r\n")
        if count and self._transport is not None:
            self._transport.write(HTTP_RESPONSE * count)
            pending = pending[pending.rfind(b"\r\n\r\n") + 4 :]
        self._pending = pending


class _RedisServe(asyncio.Protocol):
    """Answers ``ROLE`` like a Redis master; closes when the client does."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = typing.cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        if b"ROLE" in data:
            self._transport.write(REDIS_ROLE)


async def _start_stream_servers(kind: str, count: int) -> tuple[list[int], list[Any]]:
    loop = asyncio.get_running_loop()
    factory = _HttpServe if kind == "http" else _RedisServe
    servers = [
        await loop.create_server(factory, "127.0.0.1", 0, backlog=1024) for _ in range(count)
    ]
    return [s.sockets[0].getsockname()[1] for s in servers], servers


async def _start_grpc_server(count: int) -> tuple[list[int], Any]:
    import grpc.aio  # noqa: PLC0415  # Only server processes of kind grpc need it.
    from grpc_health.v1 import health, health_pb2_grpc  # noqa: PLC0415

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    ports = [server.add_insecure_port("127.0.0.1:0") for _ in range(count)]
    await server.start()
    return ports, server


async def _serve(kind: str, count: int) -> None:
    """Start `count` servers of `kind`, print their ports, serve until stdin closes."""
    loop = asyncio.get_running_loop()
    # The servers stand in for pods on other machines: they yield the CPU to the prober, so its
    # lag shows its own capacity (an overloaded server shows up as timeouts instead).
    os.nice(SERVER_NICENESS)
    if kind == "grpc":
        ports, keep = await _start_grpc_server(count)
    else:
        ports, keep = await _start_stream_servers(kind, count)
    print(json.dumps(ports), flush=True)
    await loop.run_in_executor(None, sys.stdin.buffer.read)
    del keep


class ServerFleet:
    """Server processes holding `count` loopback servers of one kind between them."""

    def __init__(self, kind: str, count: int, *, processes: int) -> None:
        """Start the processes and collect their ports."""
        shares = [count // processes + (i < count % processes) for i in range(processes)]
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.probes", "--serve", kind, "--count", str(share)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            for share in shares
            if share
        ]
        self.ports: list[int] = []
        for proc in self.procs:
            line = proc.stdout.readline() if proc.stdout is not None else b""
            if not line:
                self.close()
                raise RuntimeError(f"{kind} server process exited with {proc.wait()}")
            self.ports += json.loads(line)

    def cpu_seconds(self) -> float:
        """Return the user + system CPU time of the server processes so far."""
        ticks = 0
        for proc in self.procs:
            stat = pathlib.Path(f"/proc/{proc.pid}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        return ticks / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        """Close the servers' stdin (their signal to exit) and wait for them."""
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- Probing ----------------------------------------------------------------------------------


class _Checker(Protocol):
    async def check(self, *, deadline: float) -> types.ProbeResult: ...

    async def aclose(self) -> None: ...


class HttpxChecker:
    """The naive baseline: a GET through one httpx.AsyncClient shared by every target."""

    def __init__(self, client: httpx.AsyncClient, port: int) -> None:
        """Probe http://127.0.0.1:`port`/healthz through `client`."""
        self._client = client
        self._url = f"http://127.0.0.1:{port}/healthz"

    async def check(self, *, deadline: float) -> types.ProbeResult:
        """GET once under `deadline`."""
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._client.get(self._url)
        except TimeoutError:
            return types.ProbeResult.fail(types.FailureClass.TIMEOUT, "timeout")
        except httpx.HTTPError as error:
            return types.ProbeResult.fail(types.FailureClass.NETWORK, str(error))
        if 200 <= response.status_code < 400:  # noqa: PLR2004
            return types.ProbeResult.success()
        return types.ProbeResult.fail(types.FailureClass.NEGATIVE, str(response.status_code))

    async def aclose(self) -> None:
        """Nothing per target: the shared client is closed by the run."""


def make_checkers(kind: str, ports: list[int], client: httpx.AsyncClient | None) -> list[Any]:
    """Build one checker per port."""
    target = [types.Target("127.0.0.1", port) for port in ports]
    if kind == "http":
        return [http.HttpChecker(t, types.HttpSpec(path="/healthz")) for t in target]
    if kind == "grpc":
        return [grpc_probe.GrpcChecker(t, types.GrpcSpec(watch=False)) for t in target]
    if kind == "tcp":
        return [tcp.TcpChecker(t, TCP_SPEC) for t in target]
    if client is None:
        raise ValueError("the httpx baseline needs its shared client")
    return [HttpxChecker(client, port) for port in ports]


@dataclasses.dataclass
class Row:
    """One measured (kind, target count)."""

    kind: str
    targets: int
    probes: int
    achieved: float
    cpu_per_probe: float
    prober_cores: float
    server_cores: float
    lag_p50: float
    lag_p99: float
    failed: int
    note: str = ""


def cpu_seconds() -> float:
    """Return user + system CPU time of this process (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Window:
    """Probes started inside the measured window, and the CPU spent across it."""

    def __init__(self, start: float, end: float, *, fleet: ServerFleet) -> None:
        """Measure from `start` to `end` (loop clock); sample `fleet`'s CPU too."""
        self.start, self.end = start, end
        self.fleet = fleet
        self.server_cpu: dict[str, float] = {}
        self.lags: list[float] = []
        self.failed = 0
        self.reasons: collections.Counter[str] = collections.Counter()
        self.cpu: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        loop.call_at(start, self._sample, "start")
        loop.call_at(end, self._sample, "end")

    def _sample(self, name: str) -> None:
        self.cpu[name] = cpu_seconds()
        self.server_cpu[name] = self.fleet.cpu_seconds()

    def record(self, *, started: float, due: float, result: types.ProbeResult) -> None:
        """Count one probe if it started inside the window."""
        if self.start <= started < self.end:
            self.lags.append(started - due)
            if not result.ok:
                self.failed += 1
                self.reasons[f"{result.failure}: {result.detail[:60]}"] += 1


async def pace(checker: _Checker, *, first_due: float, window: Window, rng: random.Random) -> None:
    """Probe `checker` once per interval (with jitter) until the window ends."""
    loop = asyncio.get_running_loop()
    due = first_due
    while due < window.end and loop.time() < window.end:
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        started = loop.time()
        result = await checker.check(deadline=started + TIMEOUT_SECONDS)
        window.record(started=started, due=due, result=result)
        due += INTERVAL_SECONDS * rng.uniform(0.9, 1.1)


async def measure(
    kind: str, checkers: list[Any], *, fleet: ServerFleet, warmup: float, seconds: float
) -> Row:
    """Probe every checker about once a second; measure the window after `warmup`."""
    loop = asyncio.get_running_loop()
    rng = random.Random(len(checkers))  # noqa: S311 - jitter, not secrets.
    start = loop.time() + 0.1
    window = Window(start + warmup, start + warmup + seconds, fleet=fleet)
    tasks = [
        asyncio.create_task(pace(c, first_due=start + rng.random(), window=window, rng=rng))
        for c in checkers
    ]
    _, late = await asyncio.wait(tasks, timeout=warmup + seconds + 2 * TIMEOUT_SECONDS + 1)
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(max(0.0, window.end - loop.time()) + 0.01)  # The "end" CPU sample.
    probes = len(window.lags)
    lags = sorted(window.lags) or [float("nan")]
    return Row(
        kind=kind,
        targets=len(checkers),
        probes=probes,
        achieved=probes / seconds,
        cpu_per_probe=(window.cpu["end"] - window.cpu["start"]) / max(probes, 1),
        prober_cores=(window.cpu["end"] - window.cpu["start"]) / seconds,
        server_cores=(window.server_cpu["end"] - window.server_cpu["start"]) / seconds,
        lag_p50=statistics.median(lags),
        lag_p99=lags[min(len(lags) - 1, int(len(lags) * 0.99))],
        failed=window.failed,
        note=", ".join(f"{n} x {why}" for why, n in window.reasons.most_common(2)),
    )


async def run_one(kind: str, count: int, args: argparse.Namespace) -> Row:
    """Start the servers, probe them for warm-up plus window, clean up."""
    fleet = ServerFleet(SERVER_KIND[kind], count, processes=args.server_procs)
    client = httpx.AsyncClient() if kind == "httpx" else None
    checkers = make_checkers(kind, fleet.ports, client)
    try:
        return await measure(kind, checkers, fleet=fleet, warmup=args.warmup, seconds=args.seconds)
    finally:
        await asyncio.gather(*(c.aclose() for c in checkers))
        if client is not None:
            await client.aclose()
        fleet.close()


# --- Report -----------------------------------------------------------------------------------

LABELS = {
    "http": "HTTP (probes.http)",
    "httpx": "HTTP, naive: one shared httpx.AsyncClient",
    "grpc": "gRPC Health/Check (probes.grpc)",
    "tcp": "TCP ROLE/expect (probes.tcp)",
}


def verdict(row: Row) -> str:
    """Say whether a row keeps up, and for HTTP at 3,000 whether it meets the goal."""
    keeps_up = (
        row.achieved >= 0.97 * row.targets
        and row.lag_p99 <= 4 * GOAL_P99_LAG_SECONDS
        and row.failed <= 0.01 * row.probes
    )
    text = "yes" if keeps_up else "no"
    if row.kind == "http":
        goal = row.cpu_per_probe <= GOAL_CPU_SECONDS and row.lag_p99 <= GOAL_P99_LAG_SECONDS
        text += ", goal met" if goal else ", goal missed"
    return text + (f"; {row.note}" if row.note else "")


def render(rows: list[Row], args: argparse.Namespace, loop_name: str) -> str:
    """Return the markdown section: header line, table, ratios."""
    lines = [
        (
            f"Run on {platform.node()} ({os.cpu_count()} cores), Python "
            f"{platform.python_version()}, {loop_name} event loop, {time.strftime('%Y-%m-%d')}; "
            f"`python -m bench.probes --targets {args.targets} --seconds {args.seconds:g}` "
            f"({args.warmup:g} s warm-up; servers in {args.server_procs} other processes, "
            f"nice {SERVER_NICENESS})."
        ),
        "",
        (
            "| prober | targets | wanted/s | achieved/s | CPU per probe | prober CPU "
            "| servers' CPU | p50 lag | p99 lag | failed | keeps up |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {LABELS[r.kind]} | {r.targets:,} | {r.targets:,} | {r.achieved:,.0f} "
        f"| {r.cpu_per_probe * 1e6:,.0f} us | {r.prober_cores:.2f} cores "
        f"| {r.server_cores:.2f} cores | {r.lag_p50 * 1e3:.1f} ms | {r.lag_p99 * 1e3:.1f} ms "
        f"| {r.failed} | {verdict(r)} |"
        for r in rows
    ]
    lines += ratio_lines(rows)
    lines += [
        "",
        (
            f"Goal: 3,000 HTTP targets once a second at <= {GOAL_CPU_SECONDS * 1e6:.0f} us CPU "
            f"per probe and p99 lag <= {GOAL_P99_LAG_SECONDS * 1e3:.0f} ms. 'keeps up': >= 97 % "
            "of the wanted probes started in the window, <= 1 % failed, and p99 lag <= "
            f"{4 * GOAL_P99_LAG_SECONDS * 1e3:.0f} ms."
        ),
    ]
    for note in saturation_notes(rows) + args.notes:
        lines += ["", note]
    return "\n".join(lines)


def ratio_lines(rows: list[Row]) -> list[str]:
    """Return the lines comparing the httpx baseline with our HTTP prober at the same N."""
    ours = {r.targets: r for r in rows if r.kind == "http"}
    ratios = [
        f"- {r.targets:,} targets: httpx {r.cpu_per_probe * 1e6:,.0f} us vs ours "
        f"{ours[r.targets].cpu_per_probe * 1e6:,.0f} us per probe = "
        f"{r.cpu_per_probe / ours[r.targets].cpu_per_probe:,.1f}x"
        for r in rows
        if r.kind == "httpx" and r.targets in ours
    ]
    return ["", "Naive baseline vs our HTTP prober (CPU per probe):", *ratios] if ratios else []


def saturation_notes(rows: list[Row]) -> list[str]:
    """Explain runs whose failures come from the machine running out of CPU."""
    cores = os.cpu_count() or 1
    return [
        f"{LABELS[r.kind]} at {r.targets:,} targets: too heavy for this machine. The prober "
        f"({r.prober_cores:.2f} cores) and its loopback servers ({r.server_cores:.2f} cores) "
        f"together need about all of its {cores} cores, so answers come late and time out; "
        "the CPU per probe is still the prober's own."
        for r in rows
        if r.failed > 0.01 * r.probes
        and r.kind != "httpx"
        and r.prober_cores + r.server_cores >= 0.8 * cores
    ]


# --- Command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--targets", default="300,1000,3000", help="target counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--kinds", default="http,httpx,grpc,tcp", help="probers to measure")
    parser.add_argument(
        "--baseline-targets",
        default="300,1000",
        help="target counts for the httpx baseline (it collapses beyond a few hundred)",
    )
    parser.add_argument(
        "--grpc-max-targets",
        type=int,
        default=3000,
        help="skip gRPC runs above this many targets (the gRPC servers are heavy on 2 cores)",
    )
    parser.add_argument("--server-procs", type=int, default=2, help="server processes per run")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.notes = []
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, int]]:
    """Return the (kind, targets) runs in order, noting what is skipped."""
    counts = [int(n) for n in args.targets.split(",")]
    baseline = {int(n) for n in args.baseline_targets.split(",")}
    runs = []
    for kind in args.kinds.split(","):
        for count in counts:
            if kind == "httpx" and count not in baseline:
                continue
            if kind == "grpc" and count > args.grpc_max_targets:
                args.notes.append(f"gRPC at {count:,} targets skipped (--grpc-max-targets).")
                continue
            runs.append((kind, count))
    return runs


def raise_fd_limit() -> None:
    """Allow as many sockets as the hard limit permits (thousands of servers and connections)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def event_loop_runner() -> tuple[str, Callable[[Awaitable[Any]], Any]]:
    """Return uvloop's runner if it is installed, else asyncio's."""
    try:
        import uvloop  # type: ignore[import-not-found]  # noqa: PLC0415
    except ImportError:
        return "asyncio", asyncio.run
    return "uvloop", uvloop.run


async def run_all(args: argparse.Namespace) -> list[Row]:
    """Run every planned measurement, one after the other."""
    rows = []
    for kind, count in plan(args):
        began = time.monotonic()
        row = await run_one(kind, count, args)
        rows.append(row)
        print(
            f"{kind:>5} {count:>5} targets: {row.achieved:7.0f}/s, "
            f"{row.cpu_per_probe * 1e6:7.0f} us CPU/probe, p99 lag {row.lag_p99 * 1e3:7.1f} ms, "
            f"{row.failed} failed ({time.monotonic() - began:.0f} s) {row.note}",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --serve, one server process)."""
    args = parse_args(argv)
    raise_fd_limit()
    loop_name, run = event_loop_runner()
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            run(_serve(args.serve, args.count))
        return 0
    rows = run(run_all(args))
    text = render(rows, args, loop_name)
    print(text)
    if not args.no_write:
        report.update_section("probes", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
