"""Developer tooling for batchcert-operator: the local control plane and the demo.

Shipped as its own distribution (``batchcert-devtools``, ``operator/pyproject.toml``) beside the
Azure simulator (``batchsim``), never in the operator's image. Its command is ``batchcert-dev``.

Invariant: the operator package (``batchcert``) never imports this package; this package may
import the operator's public pieces (the demo runs ``batchcert run`` as a process).
"""
