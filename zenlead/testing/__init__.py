"""Run-time harnesses for tests, ``zen-lead dev-cluster`` and ``zen-lead demo``.

- `controlplane`: a real etcd + kube-apiserver on loopback (envtest-style).
- `assets`: where the binaries come from (``ZEN_LEAD_ASSETS``, ``KUBEBUILDER_ASSETS``, cache).
- `pki`: fresh certificates per start.
- `processes`: children that die with us, and the stray-process scan.
- `pods`: make a pod "run" without a kubelet by patching ``pods/status``.
"""

from __future__ import annotations

__all__: tuple[str, ...] = ()
