"""The local Kubernetes control plane for tests and the demo (dev tooling; the operator never
imports it).

No Docker engine and no packaged kube-apiserver exist here, so the real binaries are built from Go
modules (``k8s/`` (package data)) into a per-user cache and started the way controller-runtime's envtest
starts them: etcd and kube-apiserver on loopback free ports, RBAC authorization, client-certificate
and ServiceAccount-token authentication, no controller-manager.

Modules:

* ``binaries``  - which versions are pinned (read from ``k8s/*/go.mod``), which release is
  selected (``BATCHCERT_KUBERNETES_VERSION``), where they are cached, and building them.
* ``pki``       - the cluster's CA, serving, client and ServiceAccount-signing keys (pure crypto).
* ``flags``     - pure builders of the etcd and kube-apiserver command lines.
* ``state``     - the state dir's ``state.json`` and deciding whether a recorded run is alive.
* ``processes`` - detached process groups: start, identify, stop; free loopback ports.
* ``kubeconfig`` - kubeconfig documents (pure) and writing them.
* ``rest``      - a minimal HTTPS client for the few calls the dev cluster makes itself.
* ``cluster``   - ``Cluster.up(state_dir)`` / ``.down()``: the API tests use in-process.
* ``identity``  - an unprivileged ServiceAccount identity and its token kubeconfig.
* ``cli``       - ``batchcert-dev cluster build|up|down|status|kubeconfig``.

This package imports nothing heavy at import time: ``batchcert --help`` loads ``cli`` only.
"""
