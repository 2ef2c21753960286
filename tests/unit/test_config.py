"""Settings from the environment (batchcert.config): defaults, whole numbers where a count is
meant, and a clear error for a value that is not a positive number."""

from __future__ import annotations

import pytest

from batchcert.config import load_config


def test_defaults_and_counts_from_the_environment() -> None:
    assert (load_config({}).concurrent_turns, load_config({}).node_concurrency) == (64, 8)
    config = load_config({"BATCHCERT_CONCURRENT_TURNS": "16", "BATCHCERT_NODE_CONCURRENCY": "4"})
    assert (config.concurrent_turns, config.node_concurrency) == (16, 4)
    assert isinstance(config.concurrent_turns, int)


@pytest.mark.parametrize("raw", ["0", "-1", "many"])
def test_a_setting_that_is_not_a_positive_number_is_refused_by_name(raw: str) -> None:
    with pytest.raises(ValueError, match="BATCHCERT_CONCURRENT_TURNS"):
        load_config({"BATCHCERT_CONCURRENT_TURNS": raw})


def test_malloc_trim_is_on_unless_turned_off() -> None:
    assert load_config({}).malloc_trim is True
    assert load_config({"BATCHCERT_MALLOC_TRIM": "false"}).malloc_trim is False
    with pytest.raises(ValueError, match="BATCHCERT_MALLOC_TRIM"):
        load_config({"BATCHCERT_MALLOC_TRIM": "sometimes"})


@pytest.mark.parametrize(
    ("raw", "allowed"), [(None, True), ("true", True), ("false", False), ("0", False), ("", True)]
)
def test_verification_switch_reads_true_or_false(raw: str | None, allowed: bool) -> None:
    env = {} if raw is None else {"BATCHCERT_VERIFICATION_ALLOWED": raw}
    assert load_config(env).verification_allowed is allowed


def test_verification_switch_refuses_anything_else_by_name() -> None:
    with pytest.raises(ValueError, match="BATCHCERT_VERIFICATION_ALLOWED"):
        load_config({"BATCHCERT_VERIFICATION_ALLOWED": "sometimes"})
