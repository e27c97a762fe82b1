"""The command line answers --help and --version, from the module and the console script."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

import zenlead
from zenlead import cli


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the installed package version and exits 0."""
    with pytest.raises(SystemExit) as caught:
        cli.main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"zen-lead {zenlead.__version__}"
    assert zenlead.__version__ != "0.0.0+unknown"


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """--help names every subcommand."""
    with pytest.raises(SystemExit) as caught:
        cli.main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for command in ("dev-cluster", "demo"):
        assert command in out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown subcommand exits 2 with argparse's message."""
    with pytest.raises(SystemExit) as caught:
        cli.main(["no-such-command"])
    assert caught.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([str(pathlib.Path(sys.executable).parent / "zen-lead")], id="console-script"),
        pytest.param([sys.executable, "-m", "zenlead"], id="python-m"),
    ],
)
def test_entry_points(argv: list[str]) -> None:
    """Both the console script and ``python -m zenlead`` run the same CLI."""
    done = subprocess.run(
        [*argv, "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"zen-lead {zenlead.__version__}"


def test_missing_binaries_fail_with_instructions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without binaries, dev-cluster exits 1 and says how to build them (no traceback)."""
    for var in ("ZEN_LEAD_ASSETS", "KUBEBUILDER_ASSETS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZEN_LEAD_CACHE_DIR", str(tmp_path))
    assert cli.main(["dev-cluster", "--kubeconfig-out", str(tmp_path / "kc")]) == 1
    assert "tests/controlplane/build.sh" in capsys.readouterr().err
