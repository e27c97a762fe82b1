"""Find the control-plane binaries (etcd, kube-apiserver, kubectl, kube-proxy, helm).

Called by `ControlPlane` and by tests that run kubectl or helm. Lookup order, first hit wins:

1. ``ZEN_LEAD_ASSETS``: a directory of binaries, for example a CI cache.
2. ``KUBEBUILDER_ASSETS``: controller-runtime's envtest convention, so users with envtest
   binaries can skip our build.
3. ``$ZEN_LEAD_CACHE_DIR/bin`` (default ``~/.cache/zen-lead/bin``), where
   ``tests/controlplane/build.sh`` (run by ``make``) links the binaries it built.

A binary missing from every place raises `AssetNotFoundError` naming the command that builds it;
nothing falls back to whatever happens to be on ``PATH``, since a distribution's kubectl or etcd
may be far outside the supported version skew.
"""

from __future__ import annotations

import os
import pathlib

__all__ = ("AssetNotFoundError", "cache_dir", "find", "search_path")

BUILD_COMMAND = "bash tests/controlplane/build.sh   (or: make controlplane)"


class AssetNotFoundError(FileNotFoundError):
    """A control-plane binary is in none of the places `search_path` lists."""


def cache_dir() -> pathlib.Path:
    """Return the root of zen-lead's binary cache (outside any checkout)."""
    explicit = os.environ.get("ZEN_LEAD_CACHE_DIR")
    if explicit:
        return pathlib.Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(xdg) / "zen-lead"


def search_path() -> list[pathlib.Path]:
    """Return the directories searched for binaries, in priority order."""
    dirs = [os.environ.get("ZEN_LEAD_ASSETS"), os.environ.get("KUBEBUILDER_ASSETS")]
    found = [pathlib.Path(d) for d in dirs if d]
    found.append(cache_dir() / "bin")
    return found


def find(name: str) -> pathlib.Path:
    """Return the path of the executable `name` from the first directory that has it."""
    places = search_path()
    for directory in places:
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.resolve()
    searched = ", ".join(str(p) for p in places)
    raise AssetNotFoundError(f"{name} not found in {searched}; build it with: {BUILD_COMMAND}")
