"""Binary lookup honours ZEN_LEAD_ASSETS, then KUBEBUILDER_ASSETS, then the build cache."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from zenlead.testing import assets

if TYPE_CHECKING:
    import pathlib


def _exe(directory: pathlib.Path, name: str) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    for var in ("ZEN_LEAD_ASSETS", "KUBEBUILDER_ASSETS", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZEN_LEAD_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    ("have", "expected"),
    [
        pytest.param(("zen", "kb", "cache"), "zen", id="zen-lead-assets-first"),
        pytest.param(("kb", "cache"), "kb", id="kubebuilder-assets-second"),
        pytest.param(("cache",), "cache", id="cache-last"),
    ],
)
def test_lookup_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, have: tuple[str, ...], expected: str
) -> None:
    """The first directory in priority order that holds the binary wins."""
    dirs = {"zen": tmp_path / "zen", "kb": tmp_path / "kb", "cache": tmp_path / "cache" / "bin"}
    monkeypatch.setenv("ZEN_LEAD_ASSETS", str(dirs["zen"]))
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(dirs["kb"]))
    for name in have:
        _exe(dirs[name], "etcd")
    assert assets.find("etcd") == (dirs[expected] / "etcd").resolve()


def test_non_executable_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """A file without the execute bit does not count as the binary."""
    monkeypatch.setenv("ZEN_LEAD_ASSETS", str(tmp_path / "zen"))
    _exe(tmp_path / "zen", "etcd").chmod(0o644)
    fallback = _exe(tmp_path / "cache" / "bin", "etcd")
    assert assets.find("etcd") == fallback.resolve()


def test_missing_binary_names_the_build_command(tmp_path: pathlib.Path) -> None:
    """The error lists where it looked and how to build the binary."""
    with pytest.raises(assets.AssetNotFoundError) as caught:
        assets.find("kube-apiserver")
    message = str(caught.value)
    assert str(tmp_path / "cache" / "bin") in message
    assert "tests/controlplane/build.sh" in message


def test_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """Without ZEN_LEAD_CACHE_DIR the cache lives under XDG_CACHE_HOME/zen-lead."""
    monkeypatch.delenv("ZEN_LEAD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert assets.cache_dir() == tmp_path / "xdg" / "zen-lead"
