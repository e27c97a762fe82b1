"""kube-proxy in the test network namespace, and a client that records what it reached.

Tests, benchmarks and the demo use these to measure what matters to users: when clients of
``<svc>-leader`` reach the new leader, not when the EndpointSlice changed.

`KubeProxy` runs the real kube-proxy (built with the control plane) in nftables mode inside the
private network namespace, as a node would: a Node object named like ``--hostname-override``
with an InternalIP, ``clusterCIDR`` 10.244.0.0/16, ``conntrack.maxPerCore: 0`` (the conntrack
sysctls are not writable from a child namespace) and a route that sends locally originated
ClusterIP traffic through the nat hooks with the node address as source. It needs root in the
namespace and Debian's ``nftables`` (``nft``), which kube-proxy runs.

`Client` opens a new TCP connection to an address every `interval`, sends one HTTP request and
records each attempt: when it started, its local port, and which pod answered (the fake pods'
``X-Pod`` header) or how it failed. Paired with `probes.testing.FakePod.accepted` (the
connections each fake pod accepted), the local port tells which pod a connection reached even
when that pod never answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import IO, TYPE_CHECKING, Any, Self

import yaml

from zenlead.testing import assets, netns, processes

if TYPE_CHECKING:
    import pathlib
    import types

    from zenlead.testing import controlplane

__all__ = ("NODE_IP", "Attempt", "Client", "DataplaneError", "KubeProxy")

NODE_IP = "192.168.77.1"
"""The node's address: the source of locally originated ClusterIP traffic."""
NODE_NAME = "node-a"
"""The Node kube-proxy runs as; test pods are scheduled to it (`zenlead.testing.pods`)."""


class DataplaneError(RuntimeError):
    """kube-proxy cannot run here, or did not become healthy; the message says why."""


class KubeProxy:
    """kube-proxy for one control plane, in this network namespace; a context manager."""

    def __init__(
        self,
        plane: controlplane.ControlPlane,
        *,
        workdir: pathlib.Path,
        min_sync_seconds: float = 1.0,
    ) -> None:
        """Prepare kube-proxy for `plane`; `min_sync_seconds` is its minSyncPeriod (default 1 s)."""
        self.plane = plane
        self.workdir = workdir
        self.min_sync_seconds = min_sync_seconds
        self.metrics_port = 0
        self.health_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> Self:
        """Start and return self."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Stop kube-proxy."""
        self.stop()

    @property
    def log_path(self) -> pathlib.Path:
        """kube-proxy's log file."""
        return self.workdir / "kube-proxy.log"

    def start(self, *, timeout: float = 60.0) -> None:
        """Set up the node's network and Node object, start kube-proxy, wait until healthy."""
        _require_namespace()
        self.workdir.mkdir(parents=True, exist_ok=True)
        _route_service_traffic(self.plane.options.service_cidr)
        _register_node(self.plane)
        self.metrics_port, self.health_port = _free_port(), _free_port()
        config = self.workdir / "kube-proxy.yaml"
        config.write_text(yaml.safe_dump(self._config()))
        self._log = self.log_path.open("ab")
        args = [str(assets.find("kube-proxy")), f"--config={config}", "--v=2"]
        self._proc = processes.spawn(args, log=self._log)
        self._wait_healthy(timeout)

    def stop(self) -> None:
        """Stop kube-proxy (its rules stay in this namespace until it is gone). Idempotent."""
        if self._proc is not None:
            processes.terminate(self._proc, grace_seconds=10)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def metrics(self) -> str:
        """Return kube-proxy's /metrics text."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            body: bytes = answer.read()
        return body.decode()

    def _config(self) -> dict[str, Any]:
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.plane.kubeconfig)},
            "mode": "nftables",
            "clusterCIDR": netns.POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "conntrack": {"maxPerCore": 0},
            "nftables": {"minSyncPeriod": f"{self.min_sync_seconds}s", "syncPeriod": "30s"},
            "metricsBindAddress": f"127.0.0.1:{self.metrics_port}",
            "healthzBindAddress": f"127.0.0.1:{self.health_port}",
        }

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise DataplaneError(f"kube-proxy exited ({self._proc.returncode}){self._tail()}")
            try:
                url = f"http://127.0.0.1:{self.health_port}/healthz"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:  # noqa: PLR2004 - HTTP OK
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.1)  # Polling a child process; nothing to wait on instead.
        raise DataplaneError(f"kube-proxy not healthy after {timeout:g}s ({last}){self._tail()}")

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "; last log lines:\n" + "\n".join(lines[-20:])


def _require_namespace() -> None:
    if not netns.active():
        raise DataplaneError(
            "kube-proxy runs only inside the private pod network namespace: use `make pytest` "
            "or `python -m zenlead.testing.netns ...`"
        )
    if shutil.which("nft") is None:
        raise DataplaneError("kube-proxy needs nft: apt-get install nftables")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=10)


def _route_service_traffic(service_cidr: str) -> None:
    """Give the node its address and route ClusterIPs from here through it (idempotent)."""
    added = _run("ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo")
    if added.returncode != 0 and "File exists" not in added.stderr:
        raise DataplaneError(f"ip addr add {NODE_IP}: {added.stderr.strip()}")
    route = _run("ip", "route", "replace", service_cidr, "dev", "lo", "src", NODE_IP)
    if route.returncode != 0:
        raise DataplaneError(f"ip route replace {service_cidr}: {route.stderr.strip()}")


def _register_node(plane: controlplane.ControlPlane) -> None:
    """Create the Node kube-proxy runs as (if missing) and give it the node address."""
    from kubernetes import client  # noqa: PLC0415 - the harness's admin client.
    from kubernetes.client import exceptions  # noqa: PLC0415

    from zenlead.kube import client as kube_client  # noqa: PLC0415

    api = kube_client.connect(str(plane.kubeconfig))
    try:
        core: Any = client.CoreV1Api(api)  # Plain dict bodies are accepted at run time.
        try:
            core.create_node({"metadata": {"name": NODE_NAME}})
        except exceptions.ApiException as exc:
            if exc.status != 409:  # noqa: PLR2004 - it exists already
                raise
        status = {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}
        core.patch_node_status(NODE_NAME, {"status": status})
    finally:
        api.close()


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclasses.dataclass(frozen=True, kw_only=True)
class Attempt:
    """One client connection: when it started and what came of it.

    Attributes:
        at: Monotonic time the connection attempt started.
        local_port: The client's source port (matches a fake pod's `accepted` entry).
        pod: The pod IP that answered (``X-Pod``), or None.
        status: HTTP status, or 0 without an answer.
        error: Why there was no answer (``timeout``, ``refused``, ``reset``...), or "".
        seconds: Time to the answer or the failure.

    """

    at: float
    local_port: int
    pod: str | None
    status: int
    error: str
    seconds: float


class Client:
    """Opens a new connection to `address` every `interval` seconds; a context manager."""

    def __init__(
        self, host: str, port: int, *, interval: float = 0.02, timeout: float = 1.0
    ) -> None:
        """Aim at `host`:`port`; each attempt gives up after `timeout` seconds."""
        self.host = host
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self._attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._request = (
            f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._sending: Any = None  # The concurrent future of the sending loop.
        self._in_flight: set[asyncio.Task[None]] = set()

    def __enter__(self) -> Self:
        """Start sending."""
        self._thread.start()
        self._sending = asyncio.run_coroutine_threadsafe(self._run(), self._loop)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Stop sending and wait for the attempts in flight (each ends within its timeout)."""
        self._sending.cancel()
        drained = asyncio.run_coroutine_threadsafe(self._drain(), self._loop)
        drained.result(timeout=self.timeout + 10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _drain(self) -> None:
        if self._in_flight:
            await asyncio.wait(self._in_flight)

    def attempts(self) -> list[Attempt]:
        """Return every finished attempt so far, in start order."""
        with self._lock:
            return sorted(self._attempts, key=lambda a: a.at)

    async def _run(self) -> None:
        start = time.monotonic()
        n = 0
        while True:
            await asyncio.sleep(max(0.0, start + n * self.interval - time.monotonic()))
            task = asyncio.ensure_future(self._attempt())
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            n += 1

    async def _attempt(self) -> None:
        at = time.monotonic()
        local_port, pod, status, error = 0, None, 0, ""
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                local_port = writer.get_extra_info("sockname")[1]
                try:
                    request = (
                        f"GET /healthz HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n"
                    )
                    writer.write(request.encode())
                    head = await reader.readuntil(b"\r\n\r\n")
                    status, pod = _parse(head)
                finally:
                    writer.transport.abort()
        except TimeoutError:
            error = "timeout"
        except ConnectionRefusedError:
            error = "refused"
        except (ConnectionResetError, asyncio.IncompleteReadError):
            error = "reset"
        except OSError as exc:
            error = exc.strerror or str(exc)
        done = Attempt(
            at=at,
            local_port=local_port,
            pod=pod,
            status=status,
            error=error,
            seconds=time.monotonic() - at,
        )
        with self._lock:
            self._attempts.append(done)


def _parse(head: bytes) -> tuple[int, str | None]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    pod = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-pod":
            pod = value.strip()
    return status, pod
