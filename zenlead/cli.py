"""The ``zen-lead`` command line: parses arguments and hands each subcommand to its module.

Subcommands:

- ``dev-cluster``: run the local etcd + kube-apiserver in the foreground until SIGINT/SIGTERM.
- ``demo``: the embedded default job (for now: start the local control plane, print the API
  server's ``/version`` through the Python client, stop).

Exit codes: 0 success, 1 runtime failure (message on stderr), 2 usage error (argparse).
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import shutil
import signal
import sys
from typing import TYPE_CHECKING, NoReturn

import anyio

import zenlead
from zenlead import describe, errors, logs, settings, tracing
from zenlead.kube import api as kube_api
from zenlead.kube import client as kube_client
from zenlead.testing import assets, controlplane

if TYPE_CHECKING:
    import types
    from collections.abc import Sequence

__all__ = ("main",)

log = logging.getLogger("zenlead.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: ``sys.argv[1:]``); return the exit code."""
    args = _parser().parse_args(argv)
    # gRPC's C core logs every GOAWAY of a restarting pod at INFO on stderr; keep errors only.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.handler(args)
    except (errors.ZenleadError, assets.AssetNotFoundError, controlplane.ControlPlaneError) as exc:
        print(f"zen-lead: error: {exc}", file=sys.stderr)
        return 1
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zen-lead",
        description="Single-active routing for Kubernetes Services.",
    )
    parser.add_argument("--version", action="version", version=f"zen-lead {zenlead.__version__}")
    subs = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    dev = subs.add_parser(
        "dev-cluster",
        help="run a local etcd + kube-apiserver until interrupted",
        description="Start the local control plane, write an admin kubeconfig, print its path "
        "and run until SIGINT or SIGTERM; then stop everything and remove the kubeconfig.",
    )
    dev.add_argument(
        "--kubeconfig-out",
        type=pathlib.Path,
        required=True,
        metavar="FILE",
        help="where to write the admin kubeconfig",
    )
    dev.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep logs and certificates of the control plane after it stops",
    )
    dev.set_defaults(handler=_dev_cluster)
    demo = subs.add_parser(
        "demo",
        help="run the embedded demo on a local control plane",
        description="Start a local control plane, the controller and fake pods with real "
        "health servers in a private network namespace; hang an HTTP leader, then turn a gRPC "
        "leader NOT_SERVING, and print each failover's timeline.",
    )
    demo.set_defaults(handler=_demo)
    run = subs.add_parser(
        "run",
        help="run the controller",
        description="Run the controller in-cluster or against --kubeconfig. Settings come from "
        "flags, then ZEN_LEAD_* environment variables, then --config, then defaults.",
    )
    settings.add_flags(run)
    run.set_defaults(handler=_run)
    status = subs.add_parser(
        "status",
        help="show every opted-in Service, its leader and last failover",
        description="A table of opted-in Services: leader pod, leader since, last failover, "
        "its latency, and state (Routing, NoLeader, Pending, Conflict, Unsupported, Failing).",
    )
    _add_target_flags(status)
    status.add_argument("-A", "--all-namespaces", action="store_true", help="all namespaces")
    status.set_defaults(handler=_status)
    explain = subs.add_parser(
        "explain",
        help="explain why a pod leads a Service and why each other pod does not",
        description="Evaluate the Service's pods with the controller's own rules and print "
        "each pod's verdict.",
    )
    explain.add_argument("service", help="name of the source Service")
    _add_target_flags(explain)
    explain.set_defaults(handler=_explain)
    return parser


def _add_target_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else in-cluster)")
    sub.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")


def _api(args: argparse.Namespace) -> kube_api.Api:
    path = args.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    return kube_api.Api(kube_client.connect(path))


def _status(args: argparse.Namespace) -> int:
    client = _api(args)
    try:
        print(describe.status(client, None if args.all_namespaces else args.namespace))
    finally:
        client.api_client.close()
    return 0


def _explain(args: argparse.Namespace) -> int:
    client = _api(args)
    try:
        print(describe.explain(client, args.namespace, args.service))
    finally:
        client.api_client.close()
    return 0


class _Stop(Exception):  # noqa: N818 - a signal, not an error.
    """Raised by the SIGTERM/SIGINT handler to unwind into the control plane's cleanup."""


def _raise_stop(signum: int, _frame: types.FrameType | None) -> NoReturn:
    # A second signal must not interrupt the cleanup that the first one starts.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise _Stop(signal.Signals(signum).name)


def _dev_cluster(args: argparse.Namespace) -> int:
    # Installed before anything starts, so a signal at any moment unwinds through stop().
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _serve_dev_cluster(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve_dev_cluster(args: argparse.Namespace) -> int:
    out: pathlib.Path = args.kubeconfig_out
    options = controlplane.Options(keep_workdir=args.keep_workdir)
    try:
        with controlplane.ControlPlane(options) as plane:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plane.kubeconfig, out)
            out.chmod(0o600)
            print(f"kubeconfig: {out}", flush=True)
            print(f"workdir: {plane.workdir}", flush=True)
            while True:
                signal.pause()
    except _Stop as stop:
        log.info("received %s, stopped the control plane", stop)
    finally:
        out.unlink(missing_ok=True)
    return 0


def _demo(_args: argparse.Namespace) -> int:
    from zenlead.testing import demo  # noqa: PLC0415 - loads the controller; keep --help fast.

    return demo.main()


def _run(args: argparse.Namespace) -> int:
    config = settings.load(vars(args), os.environ, config_path=args.config)
    logs.configure(level=config.log_level, fmt=config.log_format)
    try:
        tracing.configure(
            sample_ratio=config.trace_sample_ratio, otlp_endpoint=config.otlp_endpoint
        )
    except ImportError as exc:
        raise errors.ConfigError(f"trace_sample_ratio: {exc}") from exc
    from zenlead import app  # noqa: PLC0415 - keep `--help` fast; the controller is heavy.

    async def main() -> None:
        controller = app.Controller(config)
        async with anyio.create_task_group() as tg:
            await tg.start(controller.run)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("received %s, shutting down", signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    break

    anyio.run(main, backend="asyncio")
    return 0
