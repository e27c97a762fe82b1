"""A real etcd + kube-apiserver on loopback, started and stopped like controller-runtime's envtest.

Used by the pytest fixtures (tests/conftest.py), ``zen-lead dev-cluster`` and ``zen-lead demo``.
`ControlPlane.start` makes a private work directory, generates fresh certificates, starts etcd
and kube-apiserver on free loopback ports with RBAC authorization, waits for ``/readyz`` and
writes a kubeconfig for the admin identity. `ControlPlane.stop` stops both processes (the API
server first) and removes the directory; it runs on every exit path, and the children are also
killed by the kernel if this process dies (see `processes`).

Only the API server runs: there is no controller-manager, scheduler or kubelet, so nothing makes
pods run, creates EndpointSlices for selector Services or garbage-collects owned objects.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from typing import IO, TYPE_CHECKING, Self

import yaml

from zenlead.testing import assets, pki, processes

if TYPE_CHECKING:
    import subprocess
    import types

__all__ = ("ControlPlane", "ControlPlaneError", "Options")

WORKDIR_PREFIX = "zen-lead-cp-"
"""Prefix of every control plane's work directory."""

STARTED: list[pathlib.Path] = []
"""Work directories of every control plane this process started (for the stray check)."""


class ControlPlaneError(RuntimeError):
    """etcd or kube-apiserver failed to start; the message includes the end of its log."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """How to run the control plane.

    Attributes:
        bind_address: Address etcd and kube-apiserver listen on. Default ``127.0.0.1``.
        advertise_address: Address the API server advertises; set it where there is no default
            route (a network namespace). Default: the bind address.
        service_cidr: Service ClusterIP range. Default ``10.0.0.0/24``.
        start_timeout_seconds: How long to wait for each component to become ready. Default 90.
        stop_grace_seconds: SIGTERM-to-SIGKILL grace per process. Default 10.
        extra_apiserver_args: Appended to the kube-apiserver command line.
        keep_workdir: Leave the work directory (logs, certificates) in place after `stop`.

    """

    bind_address: str = "127.0.0.1"
    advertise_address: str | None = None
    service_cidr: str = "10.0.0.0/24"
    start_timeout_seconds: float = 90.0
    stop_grace_seconds: float = 10.0
    extra_apiserver_args: tuple[str, ...] = ()
    keep_workdir: bool = False


class ControlPlane:
    """One etcd and one kube-apiserver; use as a context manager or call start/stop."""

    def __init__(self, options: Options | None = None) -> None:
        """Prepare, but do not start, a control plane with `options` (defaults if None)."""
        self.options = options or Options()
        self.workdir: pathlib.Path | None = None
        self.port = 0
        self._pki: pki.Pki | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    @property
    def url(self) -> str:
        """HTTPS URL of the API server."""
        return f"https://{self.options.bind_address}:{self.port}"

    @property
    def kubeconfig(self) -> pathlib.Path:
        """Path of the admin kubeconfig written at start."""
        return self._require_workdir() / "kubeconfig"

    @property
    def credentials(self) -> pki.Pki:
        """Certificates and keys of this control plane."""
        if self._pki is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._pki

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
        """Stop, whatever happened inside the block."""
        self.stop()

    def start(self) -> None:
        """Start etcd and kube-apiserver and wait until the API server is ready."""
        _remove_stale_workdirs()
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        STARTED.append(self.workdir)
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop both processes (API server first) and remove the work directory. Idempotent."""
        while self._procs:
            processes.terminate(self._procs.pop(), grace_seconds=self.options.stop_grace_seconds)
        while self._logs:
            self._logs.pop().close()
        if self.workdir is not None and not self.options.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_path(self, component: str) -> pathlib.Path:
        """Path of the log file of `component` (``etcd`` or ``kube-apiserver``)."""
        return self._require_workdir() / f"{component}.log"

    def _require_workdir(self) -> pathlib.Path:
        if self.workdir is None:
            raise ControlPlaneError("the control plane has not been started")
        return self.workdir

    def _start(self) -> None:
        workdir = self._require_workdir()
        opts = self.options
        self._pki = pki.write_pki(
            workdir / "pki", ips=(opts.bind_address, _first_service_ip(opts.service_cidr))
        )
        etcd_url = self._start_etcd(workdir)
        self.port = _free_port(opts.bind_address)
        self._spawn("kube-apiserver", self._apiserver_args(workdir, etcd_url))
        context = self._ssl_context()
        self._wait_http("kube-apiserver", f"{self.url}/readyz", context)
        self._wait_http("kube-apiserver", f"{self.url}/api/v1/namespaces/default", context)
        _write_kubeconfig(self.kubeconfig, url=self.url, creds=self.credentials)

    def _start_etcd(self, workdir: pathlib.Path) -> str:
        host = self.options.bind_address
        client = f"http://{host}:{_free_port(host)}"
        peer = f"http://{host}:{_free_port(host)}"
        self._spawn(
            "etcd",
            [
                str(assets.find("etcd")),
                "--name=zen-lead",
                f"--data-dir={workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=zen-lead={peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait_http("etcd", f"{client}/health", None)
        return client

    def _apiserver_args(self, workdir: pathlib.Path, etcd_url: str) -> list[str]:
        opts = self.options
        creds = self.credentials
        return [
            str(assets.find("kube-apiserver")),
            f"--etcd-servers={etcd_url}",
            f"--cert-dir={workdir / 'apiserver'}",
            f"--tls-cert-file={creds.serving_cert}",
            f"--tls-private-key-file={creds.serving_key}",
            f"--client-ca-file={creds.ca_cert}",
            f"--bind-address={opts.bind_address}",
            f"--advertise-address={opts.advertise_address or opts.bind_address}",
            f"--secure-port={self.port}",
            f"--service-cluster-ip-range={opts.service_cidr}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            # No controller-manager creates the "default" ServiceAccount that this plugin
            # requires of every pod (envtest disables it for the same reason).
            "--disable-admission-plugins=ServiceAccount",
            f"--service-account-issuer={self.url}/",
            f"--service-account-key-file={creds.sa_public}",
            f"--service-account-signing-key-file={creds.sa_private}",
            # A loopback address cannot be published as the kubernetes Service's endpoint.
            "--endpoint-reconciler-type=none",
            *opts.extra_apiserver_args,
        ]

    def _spawn(self, component: str, args: list[str]) -> None:
        log = self.log_path(component).open("ab")
        self._logs.append(log)
        self._procs.append(processes.spawn(args, log=log))

    def _ssl_context(self) -> ssl.SSLContext:
        creds = self.credentials
        context = ssl.create_default_context(cafile=str(creds.ca_cert))
        context.load_cert_chain(str(creds.admin_cert), str(creds.admin_key))
        return context

    def _wait_http(self, component: str, url: str, context: ssl.SSLContext | None) -> None:
        """Poll `url` until it answers 200, the process dies or the start timeout passes."""
        proc = self._procs[-1]
        deadline = time.monotonic() + self.options.start_timeout_seconds
        last = "no answer yet"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._fail(component, f"exited with status {proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310
                    if response.status == 200:  # noqa: PLR2004 - HTTP OK
                        return
                    last = f"HTTP {response.status}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.1)  # Polling a child process; there is nothing to wait on instead.
        self._fail(component, f"not ready after {self.options.start_timeout_seconds:g}s ({last})")

    def _fail(self, component: str, why: str) -> None:
        tail = _tail(self.log_path(component))
        raise ControlPlaneError(f"{component} {why}; last log lines:\n{tail}")


def _free_port(host: str) -> int:
    # The port may be taken between close and the child's bind; a failed start then names it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _first_service_ip(cidr: str) -> str:
    import ipaddress  # noqa: PLC0415 - only needed here, once per start.

    return str(next(ipaddress.ip_network(cidr).hosts()))


def _tail(path: pathlib.Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _write_kubeconfig(path: pathlib.Path, *, url: str, creds: pki.Pki) -> None:
    def b64(p: pathlib.Path) -> str:
        import base64  # noqa: PLC0415 - only needed here.

        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "zen-lead-local",
                "cluster": {"server": url, "certificate-authority-data": b64(creds.ca_cert)},
            }
        ],
        "users": [
            {
                "name": pki.ADMIN_USER,
                "user": {
                    "client-certificate-data": b64(creds.admin_cert),
                    "client-key-data": b64(creds.admin_key),
                },
            }
        ],
        "contexts": [
            {
                "name": "zen-lead-local",
                "context": {"cluster": "zen-lead-local", "user": pki.ADMIN_USER},
            }
        ],
        "current-context": "zen-lead-local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _remove_stale_workdirs() -> None:
    """Remove work directories whose owner process is gone (a run that was SIGKILLed)."""
    for workdir in pathlib.Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        try:
            owner = int((workdir / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not _alive(owner) and not processes.find_under(workdir):
            shutil.rmtree(workdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
