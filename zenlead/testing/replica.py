"""One zen-lead controller replica as a child process, for chaos and multi-replica tests.

`Replica` runs ``<python> -m zenlead run`` with a kubeconfig, the watched namespaces, health
and metrics endpoints on free loopback ports and any further flags, with its output in a log
file. Unlike `running.RunningController` (a controller in a thread of the test process) a
replica can be SIGKILLed, paused, measured (RSS from /proc) and given its own identity and
environment, as a pod of the Deployment would be. It dies with the test process
(`processes.spawn` sets ``PR_SET_PDEATHSIG``; start replicas from the main thread).

`FAST_ELECTION` holds the Lease timings the integration tests use (3 s / 2 s / 0.2 s).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Self

from zenlead.testing import processes

if TYPE_CHECKING:
    import subprocess
    import types
    from collections.abc import Mapping, Sequence

__all__ = ("FAST_ELECTION", "Replica", "ReplicaError")

FAST_ELECTION = (
    "--lease-duration-seconds=3",
    "--renew-deadline-seconds=2",
    "--retry-period-seconds=0.2",
)
"""Lease timings short enough for tests: takeover within about 3 s of the holder's death."""


class ReplicaError(RuntimeError):
    """The replica exited or did not become ready; the message ends with its log."""


class Replica:
    """``zen-lead run`` in a child process; use as a context manager or call start/terminate."""

    def __init__(
        self,
        kubeconfig: pathlib.Path | str,
        *,
        namespaces: Sequence[str],
        log_path: pathlib.Path,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Prepare a replica watching `namespaces`; `args` are appended to ``zen-lead run``.

        `env` adds environment variables; ``ZEN_LEAD_*`` variables of this process are not
        passed on, so only flags and `env` configure the replica.
        """
        self.kubeconfig = pathlib.Path(kubeconfig)
        self.namespaces = tuple(namespaces)
        self.log_path = log_path
        self.args = tuple(args)
        self.env = dict(env or {})
        self.metrics_port = 0
        self.health_port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """Process id of the running replica."""
        return self._require().pid

    @property
    def returncode(self) -> int | None:
        """Exit status (negative: killed by that signal), None while it runs."""
        return self._require().poll()

    def __enter__(self) -> Self:
        """Start and return self (not waiting for readiness: see `wait_ready`)."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Terminate the replica if it still runs."""
        self.terminate()

    def command(self) -> list[str]:
        """Return the command line `start` runs (after the environment prefix)."""
        return [
            sys.executable,
            "-m",
            "zenlead",
            "run",
            f"--kubeconfig={self.kubeconfig}",
            f"--namespaces={','.join(self.namespaces)}",
            f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
            f"--health-probe-bind-address=127.0.0.1:{self.health_port}",
            *self.args,
        ]

    def start(self) -> None:
        """Start the process on two free loopback ports; output goes to `log_path`."""
        if self._proc is not None and self._proc.poll() is None:
            raise ReplicaError("the replica is already running")
        self.metrics_port, self.health_port = _free_port(), _free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Appending: a restarted replica's log follows the previous run's.
        with self.log_path.open("ab") as log:
            self._proc = processes.spawn([*self._env_prefix(), *self.command()], log=log)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll /readyz until it answers 200; raise ReplicaError if it exits or times out."""
        deadline = time.monotonic() + timeout
        while self.get("/readyz") != 200:  # noqa: PLR2004 - HTTP OK
            if not self.alive():
                raise ReplicaError(f"replica exited with {self.returncode}{self._tail()}")
            if time.monotonic() > deadline:
                raise ReplicaError(f"replica not ready after {timeout:g}s{self._tail()}")
            time.sleep(0.05)  # Polling a child process; there is nothing to wait on instead.

    def get(self, path: str) -> int:
        """Return the HTTP status of GET `path` on the health port; 0 if nothing answers."""
        try:
            with urllib.request.urlopen(self._url(self.health_port, path), timeout=2) as answer:  # noqa: S310
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError):
            return 0

    def scrape(self) -> str:
        """Return the text of /metrics."""
        with urllib.request.urlopen(self._url(self.metrics_port, "/metrics"), timeout=5) as r:  # noqa: S310
            body: bytes = r.read()
        return body.decode()

    def alive(self) -> bool:
        """Return True while the process runs (a stopped process counts as alive)."""
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the replica and reap it: no cleanup, the Lease stays until it expires."""
        self.send_signal(signal.SIGKILL)
        self._require().wait()

    def terminate(self, *, grace_seconds: float = 10.0) -> None:
        """SIGTERM (then SIGKILL after `grace_seconds`) and reap. Idempotent."""
        if self._proc is not None:
            processes.terminate(self._proc, grace_seconds=grace_seconds)

    def send_signal(self, signum: int) -> None:
        """Send `signum` (e.g. SIGSTOP / SIGCONT to freeze and thaw the replica)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._require().pid, signum)

    def rss_bytes(self) -> int:
        """Return the resident set size now (VmRSS)."""
        return self._status_kib("VmRSS") * 1024

    def peak_rss_bytes(self) -> int:
        """Return the peak resident set size so far (VmHWM)."""
        return self._status_kib("VmHWM") * 1024

    def log_text(self) -> str:
        """Return everything the replica wrote to stdout and stderr."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _require(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise ReplicaError("the replica has not been started")
        return self._proc

    def _env_prefix(self) -> list[str]:
        # processes.spawn takes no environment, so `env` sets it and then execs the replica in
        # the same process: the PID and the parent-death signal carry over.
        env = shutil.which("env") or "/usr/bin/env"
        unset = [arg for name in os.environ if name.startswith("ZEN_LEAD_") for arg in ("-u", name)]
        return [env, *unset, *(f"{key}={value}" for key, value in self.env.items())]

    def _status_kib(self, field: str) -> int:
        status = pathlib.Path(f"/proc/{self.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise ReplicaError(f"no {field} in /proc/{self.pid}/status (has the replica exited?)")

    def _url(self, port: int, path: str) -> str:
        return f"http://127.0.0.1:{port}{path}"

    def _tail(self, lines: int = 30) -> str:
        return "; last log lines:\n" + "\n".join(self.log_text().splitlines()[-lines:])


def _free_port() -> int:
    # The port may be taken before the replica binds it; the replica then exits and
    # `wait_ready` reports its log.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
