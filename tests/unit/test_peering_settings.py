"""kopf settings for one replica or several (``batchcert run --peering NAME --priority N``).

Covers: without a peering name the operator is standalone (no peering object needed); with one,
it is not standalone, names the peering object, makes it mandatory (a missing object is an error,
not a silent standalone run) and carries its priority; the rest of the settings are the same.
"""

from __future__ import annotations

import kopf

from batchcert.handlers import FINALIZER, configure_settings


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
