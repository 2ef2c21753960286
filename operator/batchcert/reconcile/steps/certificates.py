"""Step 3, certificates: every certificate exists, is enabled, unexpired and renews itself
(``CertificateReady``, ``status.certificates``); ``createIfMissing`` starts creating absent ones.

Readings come from the shared watcher (``gather_certificates``, before any step runs: no Azure
call unless a cached reading expired), each failure with the error classifier's verdict. A
rotation is counted from the durable status (the first sighting is not one) and posted once.

Invariants: a create is started once and never waited for; a refused create is retried with
backoff and its reason replaces CertificateNotFound, so the user sees what to fix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from batchcert.adapters.keyvault import KeyVaultAdapter
from batchcert.assess.certificates import (
    CertificatePolicy,
    CertificateVerdict,
    assess_reading,
    build_certificate_status,
    find_previous,
    summarize_certificates,
)
from batchcert.config import Config
from batchcert.errors import AzureCallError, Backoff, classify
from batchcert.models.spec import BatchCertPoolSpec, CertificateRef
from batchcert.reasons import CertificateReason
from batchcert.reconcile.certwatch import CertificateWatcher
from batchcert.reconcile.memory import CertificatesMemory, CreateFailure
from batchcert.reconcile.outcome import Event
from batchcert.reconcile.steps.turn import CertificateSighting, StepResult, Turn
from batchcert.translate.certificate_body import build_create_certificate_body


async def gather_certificates(
    watcher: CertificateWatcher,
    spec: BatchCertPoolSpec,
    old: dict[str, Any],
    now: datetime,
) -> tuple[CertificateSighting, ...]:
    """Every certificate's shared reading and its status item (a rotation counted here, once)."""
    readings = await asyncio.gather(*(watcher.reading(c) for c in spec.certificates))
    previous_items = list(old.get("certificates") or [])
    sightings = []
    for cert, reading in zip(spec.certificates, readings, strict=True):
        item, rotated_to = build_certificate_status(
            cert, reading, find_previous(previous_items, cert), now
        )
        sightings.append(CertificateSighting(cert, reading, item, rotated_to))
    return tuple(sightings)


class CertificatesStep:
    def __init__(
        self,
        keyvault: KeyVaultAdapter,
        watcher: CertificateWatcher,
        config: Config,
        monotonic: Callable[[], float],
    ) -> None:
        self._keyvault = keyvault
        self._watcher = watcher
        self._config = config
        self._monotonic = monotonic
        self._policy = CertificatePolicy(
            expiring_soon=timedelta(days=config.expiry_warning_days),
            renewal_grace=timedelta(seconds=config.renewal_grace_seconds),
        )

    async def run(self, turn: Turn, memory: CertificatesMemory) -> StepResult:
        events = await self._create_missing(turn, memory)
        verdicts = [self._judge(turn, memory, s) for s in turn.certificates]
        for sighting in turn.certificates:
            if sighting.rotated_to is not None:
                events.append(_rotated_event(turn.spec, sighting))
                # No node pass now: nodes fetch only at their polling interval, NodesReady says
                # RotationPropagating meanwhile, and every node is read once the window closes.
        return StepResult(
            condition=summarize_certificates(verdicts),
            status={"certificates": turn.certificate_items},
            events=events,
            wake_at=self._wake_at(turn, memory),
        )

    def _judge(
        self, turn: Turn, memory: CertificatesMemory, sighting: CertificateSighting
    ) -> CertificateVerdict:
        cert = sighting.cert
        verdict = assess_reading(cert, sighting.reading, turn.now, self._policy)
        create_failure = memory.create_failures.get(cert.key)
        if create_failure is not None and not verdict.ok:
            verdict = CertificateVerdict(False, create_failure.reason, create_failure.message)
        if cert.key in memory.creating:
            if verdict.ok:
                memory.creating.discard(cert.key)
            else:
                verdict = CertificateVerdict(
                    False,
                    CertificateReason.CERTIFICATE_CREATING,
                    f"certificate {cert.cert_name} in {cert.vault} is being created",
                )
        return verdict

    def _wake_at(self, turn: Turn, memory: CertificatesMemory) -> float | None:
        due = [f.schedule.next_at for f in memory.create_failures.values()]
        if memory.creating:
            due.append(turn.mono + self._config.busy_interval_seconds)
        return min(due, default=None)

    async def _create_missing(self, turn: Turn, memory: CertificatesMemory) -> list[Event]:
        """``createIfMissing``: start creating absent certificates, once; never wait for it."""
        events: list[Event] = []
        for sighting in turn.certificates:
            cert = sighting.cert
            if cert.create_if_missing is None or not sighting.reading.is_missing:
                continue
            if cert.key in memory.creating:
                continue
            failed = memory.create_failures.get(cert.key)
            if failed is not None and not failed.schedule.is_due(self._monotonic()):
                continue  # backing off after a refused create
            event = await self._create(cert, memory, failed)
            if event is not None:
                events.append(event)
        return events

    async def _create(
        self, cert: CertificateRef, memory: CertificatesMemory, failed: CreateFailure | None
    ) -> Event | None:
        wanted = cert.create_if_missing
        assert wanted is not None
        label = f"certificate {cert.cert_name} in {cert.vault}"
        event: Event | None = None
        try:
            await self._keyvault.begin_create_certificate(
                cert.vault, cert.cert_name, build_create_certificate_body(wanted)
            )
        except AzureCallError as exc:
            if exc.status != 409:  # 409: another pool sharing it is creating it already
                verdict = classify(exc)
                message = f"creating {label} failed: {verdict.message}"
                schedule = (failed.schedule if failed else Backoff()).after_failure(
                    self._monotonic(),
                    base=self._config.busy_interval_seconds,
                    cap=self._config.drift_interval_seconds,
                    failure=verdict,
                )
                memory.create_failures[cert.key] = CreateFailure(schedule, verdict.reason, message)
                if failed is None:
                    return Event("Warning", "CertificateCreateFailed", message)
                return None
        else:
            event = Event(
                "Normal",
                "CertificateCreated",
                f"creating {label}: self-signed {wanted.subject}, "
                f"AutoRenew at {wanted.renew_at_lifetime_percentage}% of its lifetime",
            )
        memory.create_failures.pop(cert.key, None)
        memory.creating.add(cert.key)
        self._watcher.invalidate(cert)
        return event


def _rotated_event(spec: BatchCertPoolSpec, sighting: CertificateSighting) -> Event:
    cert, facts = sighting.cert, sighting.rotated_to
    assert facts is not None
    return Event(
        "Normal",
        "CertificateRotated",
        f"certificate {cert.cert_name} in {cert.vault} rotated to version {facts.version} "
        f"(thumbprint {facts.thumbprint}); nodes pick it up within "
        f"{spec.key_vault_extension.polling_interval_seconds}s",
    )
