"""What the install as a whole forbids a BatchCertPool to ask for (the deploy/ and chart switches).

A cluster administrator may forbid verification tasks for every object (``BATCHCERT_VERIFICATION_
ALLOWED=false``; the chart's ``verification.allowed``): running them needs Batch job and task write
(``Microsoft.Batch/batchAccounts/jobs/*``), which Azure grants over every job of the account, not
only the operator's. Pure: the spec and the switch in, a refusal (the registered reason and the
message that fits) or nothing out. The reconcile refuses before any Azure call, like an invalid
spec, so a refused object costs no request and leaves its pool as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchcert.models.spec import BatchCertPoolSpec
from batchcert.reasons import VERIFICATION_NOT_ALLOWED


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str


def refusal_by_install_policy(
    spec: BatchCertPoolSpec, *, verification_allowed: bool
) -> Refusal | None:
    """The refusal this install's policy gives ``spec``, or None when it allows everything."""
    if spec.verification.enabled and not verification_allowed:
        return Refusal(
            VERIFICATION_NOT_ALLOWED,
            "spec.verification.enabled is true but this install forbids verification tasks "
            "(BATCHCERT_VERIFICATION_ALLOWED=false, the chart's verification.allowed): remove "
            "spec.verification or set enabled to false; the pool is left as it is until then",
        )
    return None
