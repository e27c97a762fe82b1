"""Control planes stop completely: on SIGTERM, on a failed start, and when their owner is killed."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
from typing import IO

import pytest

from tests import helpers
from zenlead.kube import client as kube_client
from zenlead.testing import controlplane, processes


def _start_dev_cluster(kubeconfig: pathlib.Path) -> tuple[subprocess.Popen[str], pathlib.Path]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "zenlead", "dev-cluster", "--kubeconfig-out", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = _read_lines(proc.stdout, 2)
    assert lines[0] == f"kubeconfig: {kubeconfig}", lines
    workdir = pathlib.Path(lines[1].removeprefix("workdir: "))
    return proc, workdir


def _read_lines(stream: IO[str], count: int) -> list[str]:
    # readline blocks until the control plane is up; the test's timeout bounds it.
    return [stream.readline().strip() for _ in range(count)]


def _no_processes_left(workdir: pathlib.Path) -> bool:
    return not processes.find_under(workdir)


class TestDevCluster:
    """``zen-lead dev-cluster`` serves until a signal, then leaves nothing behind."""

    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
    def test_signal_stops_everything(self, tmp_path: pathlib.Path, sig: signal.Signals) -> None:
        """The cluster answers while running; after the signal no process, dir or file is left."""
        kubeconfig = tmp_path / "kc.yaml"
        proc, workdir = _start_dev_cluster(kubeconfig)
        with proc:
            api = kube_client.connect(str(kubeconfig))
            assert kube_client.server_version(api).git_version.startswith("v1.")
            api.close()
            names = {cmd.split()[0].rsplit("/", 1)[-1] for _, cmd in processes.find_under(workdir)}
            assert names == {"etcd", "kube-apiserver"}
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        assert _no_processes_left(workdir)
        assert not workdir.exists()
        assert not kubeconfig.exists()

    def test_sigkill_of_owner_kills_children(self, tmp_path: pathlib.Path) -> None:
        """Even a SIGKILLed owner leaves no etcd or kube-apiserver running (PDEATHSIG)."""
        proc, workdir = _start_dev_cluster(tmp_path / "kc.yaml")
        with proc:
            assert processes.find_under(workdir)
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
        helpers.poll(
            lambda: _no_processes_left(workdir), timeout=30, what="children of a killed owner"
        )
        # The next start sweeps the orphaned work directory away.
        with controlplane.ControlPlane():
            assert not workdir.exists()


class TestFailedStart:
    """A start that fails raises with the component's log and cleans up after itself."""

    def test_bad_apiserver_flag(self) -> None:
        """An unknown kube-apiserver flag fails the start with its log; nothing is left."""
        plane = controlplane.ControlPlane(
            controlplane.Options(extra_apiserver_args=("--no-such-flag=1",))
        )
        with pytest.raises(controlplane.ControlPlaneError, match="no-such-flag") as caught:
            plane.start()
        assert "kube-apiserver exited" in str(caught.value)
        assert plane.workdir is not None
        assert _no_processes_left(plane.workdir)
        assert not plane.workdir.exists()


class TestDemo:
    """``make demo``: two live failovers with timelines, then a clean exit."""

    def test_demo_fails_over_twice(self) -> None:
        """The demo exits 0 after moving a hung HTTP leader and a NOT_SERVING gRPC leader."""
        done = subprocess.run(
            [sys.executable, "-m", "zenlead", "demo"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        out = done.stdout
        assert "EndpointSlice web-leader points at web-1" in out
        assert "EndpointSlice rpc-leader points at rpc-1" in out
        assert out.count("zen-lead measured: failover latency") == 2
        assert "first failed probe" in out
        assert "kube-proxy (nftables mode) runs" in out
        assert "first client request answered by web-1 (through kube-proxy)" in out
        assert "first client request answered by rpc-1 (through kube-proxy)" in out
        assert out.rstrip().endswith("done: control plane, controller and fake pods stopped")
