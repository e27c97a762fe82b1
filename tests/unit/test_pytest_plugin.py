"""The stray-process check fails a run that leaves a control-plane process behind."""

from __future__ import annotations

import os
import pathlib
import signal
import tempfile
import textwrap

import pytest

from zenlead.testing import controlplane, processes


def test_leaked_process_fails_the_run(pytester: pytest.Pytester) -> None:
    """A suite whose only test passes still fails when it leaks a control-plane process."""
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=controlplane.WORKDIR_PREFIX))
    pytester.makepyfile(
        test_leak=textwrap.dedent(
            f"""
            import pathlib, subprocess, sys
            from zenlead.testing import controlplane
            def test_leaks():
                controlplane.STARTED.append(pathlib.Path({str(workdir)!r}))
                subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                  {str(workdir)!r}])
            """
        )
    )
    try:
        result = pytester.runpytest_subprocess("-p", "zenlead.testing.pytest_plugin")
        result.stdout.fnmatch_lines(["*control-plane processes left running*", "*1 passed*"])
        assert result.ret == pytest.ExitCode.TESTS_FAILED
    finally:
        for pid, _ in processes.find_under(workdir):
            os.kill(pid, signal.SIGKILL)
        workdir.rmdir()


def test_clean_run_passes(pytester: pytest.Pytester) -> None:
    """A suite that leaks nothing keeps its exit status."""
    pytester.makepyfile(test_ok="def test_ok():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "zenlead.testing.pytest_plugin")
    assert result.ret == pytest.ExitCode.OK
