"""Build Kubernetes API clients and translate their failures into `errors.KubeError`.

Everything in zen-lead that needs the API server gets its client from `connect`: from a
kubeconfig file when one is given, otherwise from the in-cluster service account.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client import exceptions as kube_exceptions
from kubernetes.config import config_exception

from zenlead import errors

__all__ = ("ServerVersion", "connect", "server_version")

ApiClient = client.ApiClient


@dataclasses.dataclass(frozen=True)
class ServerVersion:
    """What the API server reports at ``/version``."""

    git_version: str
    major: str
    minor: str
    platform: str


def connect(kubeconfig: str | None, *, context: str | None = None, pool_size: int = 32) -> Any:
    """Return an API client from `kubeconfig`, or from the in-cluster config when it is None.

    `pool_size` keep-alive connections are kept (the client's default is 5 per CPU); workers,
    Events, the Lease and informers call in parallel, and a full pool would reconnect often.
    """
    try:
        cfg = client.Configuration()
        if kubeconfig is None:
            config.load_incluster_config(client_configuration=cfg)
        else:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=cfg
            )
        cfg.connection_pool_maxsize = pool_size
        # No hidden retries: urllib3 would retry a failed connection three times, each with a
        # full timeout, past the deadline a fenced write was given. zen-lead retries itself.
        cfg.retries = False
        return client.ApiClient(cfg)
    except (config_exception.ConfigException, OSError) as exc:
        where = kubeconfig or "in-cluster service account"
        raise errors.ConfigError(f"cannot load Kubernetes config from {where}: {exc}") from exc


def server_version(api: Any, *, timeout_seconds: float = 10.0) -> ServerVersion:
    """Return the API server's version, read through the client's ``/version`` call."""
    try:
        info = client.VersionApi(api).get_code(_request_timeout=timeout_seconds)
    except kube_exceptions.ApiException as exc:
        raise errors.KubeError(f"GET /version failed: {exc.reason}", status=exc.status) from exc
    except urllib3.exceptions.HTTPError as exc:
        raise errors.KubeError(f"GET /version failed: {exc}") from exc
    return ServerVersion(
        git_version=info.git_version, major=info.major, minor=info.minor, platform=info.platform
    )
