"""kopf settings for one replica or several (``batchcert run --peering NAME --priority N``).

Covers: without a peering name the operator is standalone (no peering object needed); with one,
it is not standalone, names the peering object, makes it mandatory (a missing object is an error,
not a silent standalone run) and carries its priority; the rest of the settings are the same.
"""

from __future__ import annotations

import kopf

from batchcert.kopfsettings import FINALIZER, configure_settings


def test_alone_by_default() -> None:
    settings = kopf.OperatorSettings()
    configure_settings(settings)
    assert settings.peering.standalone is True
    assert settings.persistence.finalizer == FINALIZER


def test_peering_makes_it_one_of_several() -> None:
    settings = kopf.OperatorSettings()
    configure_settings(settings, peering="batchcert", priority=100)
    assert settings.peering.standalone is False
    assert settings.peering.name == "batchcert"
    assert settings.peering.mandatory is True
    assert settings.peering.priority == 100
    assert settings.persistence.finalizer == FINALIZER


def test_each_shard_keeps_its_own_diff_base() -> None:
    # kopf stores the diff-base even where no handler matches: one shared key would let a shard
    # that does not own an object swallow the change its owner must be woken for.
    from batchcert.reconcile.sharding import ShardAssignment

    whole, first, second = (kopf.OperatorSettings() for _ in range(3))
    configure_settings(whole)
    configure_settings(first, shard=ShardAssignment(0, 2))
    configure_settings(second, shard=ShardAssignment(1, 2))
    keys = {s.persistence.diffbase_storage.key for s in (whole, first, second)}  # type: ignore[attr-defined]
    assert len(keys) == 3
    assert whole.persistence.diffbase_storage.key == "last-handled-configuration"  # type: ignore[attr-defined]
