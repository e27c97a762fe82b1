"""Pytest plugin: fail the run if a control-plane process outlives the test session.

Loaded by tests/conftest.py (``pytest_plugins``) and usable by any suite with
``-p zenlead.testing.pytest_plugin``. Session fixtures are torn down before
``pytest_sessionfinish``, so any process still naming the work directory of a control plane
this session started was leaked by the code under test or by the harness itself. (Control
planes of other sessions, such as a developer's ``zen-lead dev-cluster``, are not ours to judge.)
"""

from __future__ import annotations

import pytest

from zenlead.testing import controlplane, processes

__all__ = ("pytest_sessionfinish",)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Set a failing exit status and list the processes if any control-plane process is left."""
    del exitstatus
    leaked = [p for workdir in controlplane.STARTED for p in processes.find_under(workdir)]
    if leaked:
        lines = "\n".join(f"  pid {pid}: {cmd[:160]}" for pid, cmd in leaked)
        print(f"\nzen-lead: control-plane processes left running after the suite:\n{lines}")  # noqa: T201
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
