"""Spawned children are found by their directory, stopped on request, and die with their owner."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

from tests import helpers
from zenlead.testing import processes

if TYPE_CHECKING:
    import pathlib

_SLEEPER = "import sys, time; time.sleep(120)"


def test_spawn_find_terminate(tmp_path: pathlib.Path) -> None:
    """A spawned child is visible by its argument until terminate() reaps it."""
    with (tmp_path / "log").open("wb") as log:
        child = processes.spawn([sys.executable, "-c", _SLEEPER, str(tmp_path)], log=log)
        assert [pid for pid, _ in processes.find_under(tmp_path)] == [child.pid]
        processes.terminate(child, grace_seconds=5)
    assert child.returncode == -signal.SIGTERM
    assert processes.find_under(tmp_path) == []


def test_terminate_escalates_to_sigkill(tmp_path: pathlib.Path) -> None:
    """A child that ignores SIGTERM is killed after the grace period."""
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "print(1, flush=True); time.sleep(120)"
    )
    with (tmp_path / "log").open("wb") as log:
        child = processes.spawn([sys.executable, "-c", stubborn, str(tmp_path)], log=log)
        helpers.poll((tmp_path / "log").read_bytes, timeout=20, what="handler installed")
        processes.terminate(child, grace_seconds=0.2)
    assert child.returncode == -signal.SIGKILL


def test_child_dies_with_killed_owner(tmp_path: pathlib.Path) -> None:
    """When the owner is SIGKILLed, the kernel kills the child too."""
    owner_code = textwrap.dedent(
        f"""
        import sys
        from zenlead.testing import processes
        log = open({str(tmp_path / "child.log")!r}, "wb")
        processes.spawn([sys.executable, "-c", {_SLEEPER!r}, {str(tmp_path)!r}], log=log)
        print("spawned", flush=True)
        import time; time.sleep(120)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", owner_code], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    assert owner.stdout.readline().strip() == "spawned"
    assert processes.find_under(tmp_path)
    owner.kill()
    owner.wait()
    owner.stdout.close()
    helpers.poll(lambda: not processes.find_under(tmp_path), timeout=20, what="child to die")
