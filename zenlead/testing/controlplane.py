"""A real etcd + kube-apiserver on loopback, started and stopped like controller-runtime's envtest.

Used by the pytest fixtures (tests/conftest.py), ``zen-lead dev-cluster`` and ``zen-lead demo``.
`ControlPlane.start` makes a private work directory, generates fresh certificates, starts etcd
and kube-apiserver on free loopback ports with RBAC authorization, waits for ``/readyz`` and
writes a kubeconfig for the admin identity. `ControlPlane.stop` stops both processes (the API
server first) and removes the directory; it runs on every exit path, and the children are also
killed by the kernel if this process dies (see `processes`).

Only the API server runs: there is no controller-manager, scheduler or kubelet, so nothing makes
pods run, creates EndpointSlices for selector Services or garbage-collects owned objects.

Chaos controls, for tests of how the controller survives its dependencies failing:

- `ControlPlane.stop_apiserver` / `start_apiserver` and `stop_etcd` / `start_etcd` stop (SIGTERM,
  or SIGKILL with ``kill=True``) and restart one component on the same ports, certificates and
  data; the other keeps running. `stop` still stops whatever runs.
- `ControlPlane.compact_etcd` compacts etcd to its current revision, so old resourceVersions
  expire. The API server's watch cache keeps serving them (a watch from a compacted revision
  replays the cached events), so a test that needs the 410 Gone must turn the cache off for the
  resource: ``Options(uncached_resources=("endpointslices.discovery.k8s.io",))`` or
  ``Options(watch_cache=False)``. Then a watch from an old resourceVersion gets an ERROR event
  with code 410 (HTTP 200), and an exact list at that resourceVersion a 410 response. Two other
  ways to a 410 with the cache on: restart the API server (its caches start at the current
  revision: "too old resource version"), or compact right after an etcd outage, before the
  caches re-watch etcd (they reinitialise: 429 "storage is (re)initializing" for about a
  second, then 410).
- ``Options(audit=True)`` writes an audit log of every create, update, patch and delete of
  Leases, EndpointSlices and Services; `ControlPlane.audit_events` parses it into `AuditEvent`.
- `ControlPlane.issue_user` writes a kubeconfig for any user and groups (RBAC applies), pointing
  at the API server or at another address such as a `proxy.Proxy`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import os
import pathlib
import re
import shutil
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from typing import IO, TYPE_CHECKING, Any, Self

import yaml

from zenlead.testing import assets, pki, processes

if TYPE_CHECKING:
    import subprocess
    import types

__all__ = ("AuditEvent", "ControlPlane", "ControlPlaneError", "Options")

WORKDIR_PREFIX = "zen-lead-cp-"
"""Prefix of every control plane's work directory."""

STARTED: list[pathlib.Path] = []
"""Work directories of every control plane this process started (for the stray check)."""

ETCD = "etcd"
APISERVER = "kube-apiserver"
_STOP_ORDER = (APISERVER, ETCD)  # The API server first, so it never runs without its store.

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "RequestResponse",
            "verbs": ["create", "update", "patch", "delete"],
            "resources": [
                {"group": "coordination.k8s.io", "resources": ["leases"]},
                {"group": "discovery.k8s.io", "resources": ["endpointslices"]},
                {"group": "", "resources": ["services"]},
            ],
        },
        {
            "level": "Metadata",
            "verbs": ["get"],
            "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}],
        },
        {"level": "None"},
    ],
}
"""What ``Options(audit=True)`` records: writes to the objects zen-lead's safety depends on,
and Lease reads (a renewal's validity starts before the read that precedes its write)."""


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
        audit: Write an audit log (`AUDIT_POLICY`, JSON, blocking mode) that `audit_events`
            reads. Default off.
        watch_cache: False passes ``--watch-cache=false``: every list and watch is served by
            etcd, so compacted resourceVersions get 410 Gone. Default True.
        uncached_resources: Resources whose watch cache is turned off
            (``--watch-cache-sizes=<resource>#0``), written ``resource[.group]``, e.g.
            ``endpointslices.discovery.k8s.io`` or ``pods``. Default none.

    """

    bind_address: str = "127.0.0.1"
    advertise_address: str | None = None
    service_cidr: str = "10.0.0.0/24"
    start_timeout_seconds: float = 90.0
    stop_grace_seconds: float = 10.0
    extra_apiserver_args: tuple[str, ...] = ()
    keep_workdir: bool = False
    audit: bool = False
    watch_cache: bool = True
    uncached_resources: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """One completed request from the audit log (stage ResponseComplete or Panic).

    Attributes:
        verb: ``create``, ``update``, ``patch`` or ``delete``.
        resource: plural resource name (``leases``, ``endpointslices``, ``services``).
        subresource: e.g. ``status``; empty for the object itself.
        namespace: namespace of the object.
        name: name of the object (from the request path or, for creates, the object).
        user: authenticated user name.
        groups: its groups.
        user_agent: the client's User-Agent header.
        code: HTTP status of the response.
        request_received: when the API server received the request.
        stage_timestamp: when the response was complete.
        stage: audit stage (``ResponseComplete``).
        resource_version: metadata.resourceVersion of the response object (an etcd revision:
            a total order over all resources); None for failures and Status answers.
        holder: spec.holderIdentity of a Lease in the response; None for other objects, for
            failures and for a Lease without holder.

    """

    verb: str
    resource: str
    subresource: str
    namespace: str
    name: str
    user: str
    groups: tuple[str, ...]
    user_agent: str
    code: int
    request_received: datetime.datetime
    stage_timestamp: datetime.datetime
    stage: str
    resource_version: int | None
    holder: str | None

    @property
    def succeeded(self) -> bool:
        """True for a 2xx response."""
        return 200 <= self.code < 300  # noqa: PLR2004 - the HTTP success range


class ControlPlane:
    """One etcd and one kube-apiserver; use as a context manager or call start/stop."""

    def __init__(self, options: Options | None = None) -> None:
        """Prepare, but do not start, a control plane with `options` (defaults if None)."""
        self.options = options or Options()
        self.workdir: pathlib.Path | None = None
        self.port = 0
        self._pki: pki.Pki | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._etcd_client_url = ""
        self._etcd_peer_url = ""
        self._users = 0

    @property
    def url(self) -> str:
        """HTTPS URL of the API server."""
        return f"https://{self.options.bind_address}:{self.port}"

    @property
    def etcd_url(self) -> str:
        """HTTP URL of etcd's client endpoint (its v3 JSON gateway is under ``/v3/``)."""
        if not self._etcd_client_url:
            raise ControlPlaneError("the control plane has not been started")
        return self._etcd_client_url

    @property
    def audit_log(self) -> pathlib.Path:
        """Path of the audit log (written only with ``Options(audit=True)``)."""
        return self._require_workdir() / "audit.log"

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
        for component in _STOP_ORDER:
            self._stop(component, kill=False)
        if self.workdir is not None and not self.options.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_apiserver(self, *, kill: bool = False) -> None:
        """Stop kube-apiserver (SIGTERM, or SIGKILL if `kill`); etcd keeps running."""
        self._stop(APISERVER, kill=kill)

    def kill_apiserver(self) -> None:
        """SIGKILL kube-apiserver: no graceful shutdown, open connections are reset."""
        self.stop_apiserver(kill=True)

    def start_apiserver(self) -> None:
        """Start kube-apiserver again on the same port and certificates; wait for /readyz."""
        self._require_stopped(APISERVER)
        self._spawn(APISERVER, self._apiserver_args(self._require_workdir()))
        self._wait_http(APISERVER, f"{self.url}/readyz", self._ssl_context())

    def stop_etcd(self, *, kill: bool = False) -> None:
        """Stop etcd (SIGTERM, or SIGKILL if `kill`); the API server keeps running and fails."""
        self._stop(ETCD, kill=kill)

    def kill_etcd(self) -> None:
        """SIGKILL etcd; requests that need storage fail until `start_etcd`."""
        self.stop_etcd(kill=True)

    def start_etcd(self) -> None:
        """Start etcd again with the same data directory and URLs; wait for /health."""
        self._require_stopped(ETCD)
        self._spawn(ETCD, self._etcd_args(self._require_workdir()))
        self._wait_http(ETCD, f"{self.etcd_url}/health", None)

    def compact_etcd(self) -> int:
        """Compact etcd to its current revision and return that revision.

        Every resourceVersion below it is gone from etcd. Watches served by the API server's
        watch cache do not notice (see the module docstring for the options that make them).
        """
        header = _etcd_post(self.etcd_url, "/v3/kv/range", {"key": _b64(b"/"), "limit": 1})
        revision = int(header["header"]["revision"])
        _etcd_post(self.etcd_url, "/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def audit_events(self) -> list[AuditEvent]:
        """Parse the audit log: every completed request so far, in the order it was logged."""
        try:
            text = self.audit_log.read_text()
        except FileNotFoundError:
            return []
        # The API server may be writing the last line right now; only whole lines count.
        lines = text.splitlines()[: text.count("\n")]
        events = (_audit_event(json.loads(line)) for line in lines if line.strip())
        return [event for event in events if event is not None]

    def issue_user(
        self, name: str, *, groups: tuple[str, ...] = (), server_url: str | None = None
    ) -> pathlib.Path:
        """Write a kubeconfig for a client certificate of user `name` in `groups`.

        The user has no rights until RBAC grants them, and API Priority and Fairness applies
        (unlike the admin, in ``system:masters``). `server_url` (default: the API server) lets
        the kubeconfig point at a proxy in front of it; the certificate authority stays the
        same, so the proxy must pass TLS through.
        """
        self._users += 1
        users = self._require_workdir() / "users"
        stem = f"{self._users:03d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"
        cert = pki.issue_client_cert(self.credentials, users, stem=stem, user=name, groups=groups)
        path = users / f"{stem}.kubeconfig"
        _write_kubeconfig(
            path, url=server_url or self.url, ca=self.credentials.ca_cert, user=name, cert=cert
        )
        return path

    def log_path(self, component: str) -> pathlib.Path:
        """Path of the log file of `component` (``etcd`` or ``kube-apiserver``)."""
        return self._require_workdir() / f"{component}.log"

    def _require_workdir(self) -> pathlib.Path:
        if self.workdir is None:
            raise ControlPlaneError("the control plane has not been started")
        return self.workdir

    def _require_stopped(self, component: str) -> None:
        proc = self._procs.get(component)
        if proc is not None and proc.poll() is None:
            raise ControlPlaneError(f"{component} is already running")
        self._stop(component, kill=True)  # Reaps one that exited by itself; closes its log.

    def _start(self) -> None:
        workdir = self._require_workdir()
        opts = self.options
        host = opts.bind_address
        self._pki = pki.write_pki(workdir / "pki", ips=(host, _first_service_ip(opts.service_cidr)))
        self._etcd_client_url = f"http://{host}:{_free_port(host)}"
        self._etcd_peer_url = f"http://{host}:{_free_port(host)}"
        self.start_etcd()
        self.port = _free_port(host)
        if opts.audit:
            (workdir / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
        self.start_apiserver()
        context = self._ssl_context()
        self._wait_http(APISERVER, f"{self.url}/api/v1/namespaces/default", context)
        creds = self.credentials
        _write_kubeconfig(
            self.kubeconfig,
            url=self.url,
            ca=creds.ca_cert,
            user=pki.ADMIN_USER,
            cert=pki.ClientCert(creds.admin_cert, creds.admin_key),
        )

    def _stop(self, component: str, *, kill: bool) -> None:
        proc = self._procs.pop(component, None)
        if proc is not None:
            if kill:
                proc.kill()
                proc.wait()
            else:
                processes.terminate(proc, grace_seconds=self.options.stop_grace_seconds)
        log = self._logs.pop(component, None)
        if log is not None:
            log.close()

    def _etcd_args(self, workdir: pathlib.Path) -> list[str]:
        client, peer = self._etcd_client_url, self._etcd_peer_url
        return [
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
        ]

    def _apiserver_args(self, workdir: pathlib.Path) -> list[str]:
        opts = self.options
        creds = self.credentials
        return [
            str(assets.find("kube-apiserver")),
            f"--etcd-servers={self.etcd_url}",
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
            *self._optional_apiserver_args(workdir),
            *opts.extra_apiserver_args,
        ]

    def _optional_apiserver_args(self, workdir: pathlib.Path) -> list[str]:
        opts = self.options
        args = []
        if opts.audit:
            args += [
                f"--audit-policy-file={workdir / 'audit-policy.yaml'}",
                f"--audit-log-path={workdir / 'audit.log'}",
                "--audit-log-format=json",
                # Written in the request path, not batched: an event is in the file about
                # when its client sees the answer (poll briefly, it may lag by microseconds).
                "--audit-log-mode=blocking",
            ]
        if not opts.watch_cache:
            args.append("--watch-cache=false")
        if opts.uncached_resources:
            sizes = ",".join(f"{resource}#0" for resource in opts.uncached_resources)
            args.append(f"--watch-cache-sizes={sizes}")
        return args

    def _spawn(self, component: str, args: list[str]) -> None:
        # Opened for appending, so a restarted component's log follows its previous run.
        log = self.log_path(component).open("ab")
        self._logs[component] = log
        self._procs[component] = processes.spawn(args, log=log)

    def _ssl_context(self) -> ssl.SSLContext:
        creds = self.credentials
        context = ssl.create_default_context(cafile=str(creds.ca_cert))
        context.load_cert_chain(str(creds.admin_cert), str(creds.admin_key))
        return context

    def _wait_http(self, component: str, url: str, context: ssl.SSLContext | None) -> None:
        """Poll `url` until it answers 200, the process dies or the start timeout passes."""
        proc = self._procs[component]
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


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _write_kubeconfig(
    path: pathlib.Path, *, url: str, ca: pathlib.Path, user: str, cert: pki.ClientCert
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "zen-lead-local",
                "cluster": {"server": url, "certificate-authority-data": _b64(ca.read_bytes())},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(cert.cert.read_bytes()),
                    "client-key-data": _b64(cert.key.read_bytes()),
                },
            }
        ],
        "contexts": [
            {"name": "zen-lead-local", "context": {"cluster": "zen-lead-local", "user": user}}
        ],
        "current-context": "zen-lead-local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def _etcd_post(base_url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body` to etcd's v3 JSON gateway and return the decoded answer."""
    request = urllib.request.Request(  # noqa: S310 - our own etcd, over http on loopback.
        f"{base_url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
    except (urllib.error.URLError, OSError) as exc:
        raise ControlPlaneError(f"etcd {path} failed: {exc}") from exc
    return answer


_WRITE_STAGES = frozenset({"ResponseComplete", "Panic"})


def _audit_event(raw: dict[str, Any]) -> AuditEvent | None:
    """Return the event of one audit line, or None for stages before the response."""
    if raw.get("stage") not in _WRITE_STAGES:
        return None
    ref = raw.get("objectRef") or {}
    response = raw.get("responseObject") or {}
    meta = response.get("metadata") or {}
    user = raw.get("user") or {}
    rv = meta.get("resourceVersion") if response.get("kind") != "Status" else None
    holder = (
        (response.get("spec") or {}).get("holderIdentity")
        if response.get("kind") == "Lease"
        else None
    )
    return AuditEvent(
        verb=raw.get("verb", ""),
        resource=ref.get("resource", ""),
        subresource=ref.get("subresource", ""),
        namespace=ref.get("namespace") or meta.get("namespace", ""),
        name=ref.get("name") or meta.get("name", ""),
        user=user.get("username", ""),
        groups=tuple(user.get("groups") or ()),
        user_agent=raw.get("userAgent", ""),
        code=int((raw.get("responseStatus") or {}).get("code") or 0),
        request_received=datetime.datetime.fromisoformat(raw["requestReceivedTimestamp"]),
        stage_timestamp=datetime.datetime.fromisoformat(raw["stageTimestamp"]),
        stage=raw["stage"],
        resource_version=int(rv) if rv else None,
        holder=holder or None,
    )


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
