"""Child processes that cannot outlive their parent, and a scan for ones that did.

`ControlPlane` starts etcd and kube-apiserver through `spawn`. Each child:

- gets ``PR_SET_PDEATHSIG(SIGKILL)``, so the kernel kills it if the process that started it
  dies in any way (SIGKILL included) before calling `terminate`;
- runs in its own session, so a terminal's Ctrl-C reaches only us and we stop the children in
  order (kube-apiserver before etcd).

`find_under` lists live processes whose command line mentions a directory; the test suite uses
it at the end of a run to prove that nothing it started is still running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import signal
import subprocess
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("find_under", "spawn", "terminate")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. The death signal fires when the *thread* that
    # forked exits, so callers spawn from a long-lived thread (the main thread in practice).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def spawn(args: Sequence[str], *, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start `args` with output to `log`; the child dies if this process dies."""
    return subprocess.Popen(
        list(args),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # prctl must run in the child before exec; only the main thread spawns.
        preexec_fn=_die_with_parent,  # noqa: PLW1509
    )


def terminate(proc: subprocess.Popen[bytes], *, grace_seconds: float) -> None:
    """Stop `proc`: SIGTERM, then SIGKILL after `grace_seconds`; always reaps it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    proc.wait()


def find_under(directory: pathlib.Path | str) -> list[tuple[int, str]]:
    """Return (pid, command line) of live processes whose arguments mention `directory`."""
    needle = str(directory)
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # The process exited while we looked; that is what we hope for.
        cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        if needle in cmdline and not _is_zombie(entry):
            found.append((int(entry.name), cmdline))
    return found


def _is_zombie(entry: pathlib.Path) -> bool:
    try:
        stat = (entry / "stat").read_text()
    except OSError:
        return True
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rpartition(")")[2].split()[0] in {"Z", "X"}
