"""Run-time harnesses for tests, ``zen-lead dev-cluster`` and ``zen-lead demo``.

- `controlplane`: a real etcd + kube-apiserver on loopback (envtest-style).
- `assets`: where the binaries come from (``ZEN_LEAD_ASSETS``, ``KUBEBUILDER_ASSETS``, cache).
- `pki`: fresh certificates per start.
- `processes`: children that die with us, and the stray-process scan.
- `pods`: make a pod "run" without a kubelet by patching ``pods/status``.
- `running`: a controller in a background thread; `replica`: one as a child process.
- `proxy`: a TCP proxy to the API server that pauses, cuts, slows and heals the link.
- `history`: records every version of slices, pods and Leases a client could see, and the
  chaos suite's checks over it and over the API server's audit log.
"""

from __future__ import annotations

__all__: tuple[str, ...] = ()
