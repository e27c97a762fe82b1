"""Run a command inside a private network namespace in which all of 10.244.0.0/16 is local.

Fake pods bind their health servers to their own pod IPs there (the API server rejects
loopback addresses in EndpointSlices, so test pods need ordinary-looking IPs) and no packet can
leave the namespace. Used by ``make pytest`` (``python -m zenlead.testing.netns pytest ...``),
``zen-lead demo`` and the probing benchmarks. Already inside such a namespace, the command runs
as it is. Root uses ``unshare --net``; other users need unprivileged user namespaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

__all__ = ("POD_CIDR", "active", "reexec", "run")

POD_CIDR = "10.244.0.0/16"


def active() -> bool:
    """Return True if 10.244.0.0/16 is a local route here (we are inside such a namespace)."""
    try:
        out = subprocess.run(
            ["ip", "route", "show", "table", "local"],  # noqa: S607 - iproute2 from PATH
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.startswith(f"local {POD_CIDR} ") for line in out.splitlines())


def _unshare_prefix() -> list[str]:
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            sys.exit(
                f"zen-lead: {tool} is required for the pod network "
                "(apt-get install util-linux iproute2)"
            )
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", *user, "--net", "--"]


_SETUP = f'ip link set lo up && ip route add local {POD_CIDR} dev lo && exec "$@"'


def reexec(argv: list[str]) -> None:
    """Replace this process with `argv` run inside a new pod network namespace."""
    argv = [*_unshare_prefix(), "bash", "-c", _SETUP, "netns", *argv]
    os.execvp(argv[0], argv)  # noqa: S606 - our own command line, no shell interpolation.


def run(argv: list[str]) -> None:
    """Run `argv` inside the pod network (entering one unless already inside)."""
    if active():
        os.execvp(argv[0], argv)  # noqa: S606
    reexec(argv)


if __name__ == "__main__":
    if len(sys.argv) < 2:  # noqa: PLR2004
        sys.exit("usage: python -m zenlead.testing.netns COMMAND [ARG...]")
    run(sys.argv[1:])
