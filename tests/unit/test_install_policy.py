"""The install-wide policy (batchcert.assess.install_policy): what the install forbids a spec.

Covers: verification asked for while the install forbids it is refused with the registered
reason (a user action: Stalled) and a message naming the field and the switch; allowed, or not
asked for, nothing is refused.
"""

from __future__ import annotations

import pytest

from batchcert.assess.install_policy import refusal_by_install_policy
from batchcert.models.spec import BatchCertPoolSpec, parse_spec
from batchcert.reasons import READY, VERIFICATION_NOT_ALLOWED, Action, find_reason
from support.builders import base_spec

pytestmark = pytest.mark.unit


def _spec(verification: bool) -> BatchCertPoolSpec:
    return parse_spec(base_spec(verification={"enabled": verification}))


def test_verification_forbidden_by_the_install_is_refused_with_a_reason() -> None:
    refusal = refusal_by_install_policy(_spec(True), verification_allowed=False)
    assert refusal is not None
    assert refusal.reason == VERIFICATION_NOT_ALLOWED
    reason = find_reason(READY, refusal.reason)
    assert reason is not None and reason.action is Action.USER
    assert "spec.verification" in refusal.message
    assert "BATCHCERT_VERIFICATION_ALLOWED" in refusal.message


@pytest.mark.parametrize(("asked", "allowed"), [(True, True), (False, False), (False, True)])
def test_nothing_else_is_refused(asked: bool, allowed: bool) -> None:
    assert refusal_by_install_policy(_spec(asked), verification_allowed=allowed) is None
