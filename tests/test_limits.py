"""Up-front limits: documented defaults, environment overrides, messages naming the option and the way out."""

from __future__ import annotations

import pytest

from qsp.errors import InputError
from qsp.limits import LIMITS, check_limit, check_memory, limit, trial_memory_bytes


def test_defaults_and_env_override(monkeypatch):
    assert limit("patients") == LIMITS["patients"].default == 200_000
    monkeypatch.setenv("QSP_MAX_PATIENTS", "500000")
    assert limit("patients") == 500_000
    check_limit("patients", 400_000, field="--patients")
    monkeypatch.setenv("QSP_MAX_PATIENTS", "-3")
    with pytest.raises(InputError, match="QSP_MAX_PATIENTS"):
        limit("patients")


def test_message_names_field_value_limit_and_how_to_raise():
    with pytest.raises(InputError) as ei:
        check_limit("days", 1e9, field="--days", hint="or split the run")
    msg = str(ei.value)
    for w in ("--days", "1,000,000,000", "3,650", "QSP_MAX_DAYS", "split the run"):
        assert w in msg


def test_memory_estimate_grows_with_the_cohort_and_is_refused_above_the_cap(monkeypatch):
    small = trial_memory_bytes(1000, 43, 4, 7, 70, chunk=1000, seg_points=48, n_segments=16)
    big = trial_memory_bytes(1_000_000, 43, 4, 7, 70, chunk=2048, seg_points=48, n_segments=16)
    assert 0 < small < big and big / small > 100
    check_memory(small, field="--patients")
    monkeypatch.setenv("QSP_MAX_MEMORY_GB", "0.001")
    with pytest.raises(InputError, match="QSP_MAX_MEMORY_GB"):
        check_memory(small, field="--patients")
