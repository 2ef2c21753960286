"""batchcert-operator: Azure Batch pools whose nodes keep Key Vault certificates rotated.

Layers (enforced by import-linter, see pyproject.toml):

* ``handlers``  – kopf registration only; parse kwargs, call one reconcile function.
* ``reconcile`` – use cases: gather the world, decide, act, report.
* ``translate``, ``conditions``, ``errors`` – pure functions, no I/O.
* ``adapters``  – the only modules that talk to Azure or Kubernetes.
* ``models``    – typed spec/status models parsed once at the boundary.

This package is what ships. The Azure simulator (``batchsim``) and the dev cluster and demo
(``batchdev``) share the source root but are another distribution (``operator/pyproject.toml``);
this package never imports them.
"""

__version__ = "0.1.0"
