"""Logs carry the correlation id of the work in progress, as text or as JSON."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest

from zenlead import logs, tracing

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def restore_root() -> Iterator[None]:
    """Put the root logger's handlers and level back after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root")
def test_json_lines_carry_the_correlation_id(capsys: pytest.CaptureFixture[str]) -> None:
    """A JSON log line inside bound work has its correlation id; outside it has none."""
    logs.configure(level="info", fmt="json")
    log = logging.getLogger("zenlead.test")
    with tracing.bound(tracing.Trigger("abc123")):
        log.info("inside")
    log.info("outside")
    inside, outside = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert (inside["message"], inside["correlation_id"], inside["level"]) == (
        "inside",
        "abc123",
        "info",
    )
    assert "correlation_id" not in outside


@pytest.mark.usefixtures("restore_root")
def test_text_lines_end_with_the_correlation_id(capsys: pytest.CaptureFixture[str]) -> None:
    """The human format appends [cid=...] when there is one."""
    logs.configure(level="info", fmt="text")
    with tracing.bound(tracing.Trigger("feed42")):
        logging.getLogger("zenlead.test").warning("hello")
    line = capsys.readouterr().err.strip()
    assert line.endswith("zenlead.test: hello [cid=feed42]")
    assert " WARNING " in line
