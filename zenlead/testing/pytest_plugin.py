"""Pytest plugin: fail the run if a control-plane process outlives the test session.

Loaded by tests/conftest.py (``pytest_plugins``) and usable by any suite with
``-p zenlead.testing.pytest_plugin``. Session fixtures are torn down before
``pytest_sessionfinish``, so any process still naming a control-plane work directory there was
leaked by the code under test or by the harness itself.
"""

from __future__ import annotations

import pathlib
import tempfile

import pytest

from zenlead.testing import controlplane, processes

__all__ = ("pytest_sessionfinish",)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Set a failing exit status and list the processes if any control-plane process is left."""
    del exitstatus
    tmp = pathlib.Path(tempfile.gettempdir())
    leaked = processes.find_under(tmp / controlplane.WORKDIR_PREFIX)
    if leaked:
        lines = "\n".join(f"  pid {pid}: {cmd[:160]}" for pid, cmd in leaked)
        print(f"\nzen-lead: control-plane processes left running after the suite:\n{lines}")  # noqa: T201
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
