"""Kubernetes-style conditions: transition times, ordering, and which changes are events."""

from __future__ import annotations

import datetime as dt

import pytest
from vpes_operator.conditions import (
    Cond,
    find,
    is_true,
    set_condition,
    timestamp,
    transitions,
)
from vpes_operator.models.conditions import Condition

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=7, seconds=3)


def entry(type_: str, status: str, reason: str = "R", message: str = "m") -> Condition:
    return Condition.model_validate(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": timestamp(T0),
        }
    )


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (dt.datetime(2026, 3, 1, 12, 0, 0, 987654, tzinfo=dt.UTC), "2026-03-01T12:00:00Z"),
        # A non-UTC clock is converted, not relabelled.
        (
            dt.datetime(2026, 3, 1, 13, 30, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "2026-03-01T12:30:00Z",
        ),
    ],
)
def test_timestamp_is_rfc3339_utc_seconds(when: dt.datetime, expected: str) -> None:
    assert timestamp(when) == expected


@pytest.mark.parametrize(
    ("old_status", "new", "time_moves"),
    [
        pytest.param(None, Cond("Ready", True, "Running", "ok"), True, id="new-condition"),
        pytest.param("True", Cond("Ready", True, "Running", "ok"), False, id="same-status"),
        pytest.param(
            "True", Cond("Ready", True, "OtherReason", "other"), False, id="reason-only-change"
        ),
        pytest.param("True", Cond("Ready", False, "PodNotReady", "x"), True, id="true-to-false"),
        pytest.param("False", Cond("Ready", True, "Running", "ok"), True, id="false-to-true"),
        pytest.param("Unknown", Cond("Ready", False, "R", "m"), True, id="unknown-to-false"),
    ],
)
def test_last_transition_time_moves_only_when_status_flips(
    old_status: str | None, new: Cond, time_moves: bool
) -> None:
    before = [] if old_status is None else [entry("Ready", old_status)]
    after = set_condition(before, new, generation=3, now=T1)
    got = find(after, "Ready")
    assert got is not None
    assert timestamp(got.last_transition_time) == timestamp(T1 if time_moves else T0)
    # Everything else is always the new value.
    assert got.status == new.status_text
    assert got.reason == new.reason
    assert got.message == new.message
    assert got.observed_generation == 3


def test_set_condition_does_not_mutate_its_input() -> None:
    before = [entry("Ready", "True")]
    snapshot = [c.model_copy() for c in before]
    set_condition(before, Cond("Ready", False, "X", "y"), generation=1, now=T1)
    assert before == snapshot


def test_no_generation_means_no_observed_generation() -> None:
    out = set_condition([], Cond("Ready", True, "R", "m"), generation=None, now=T0)
    assert "observedGeneration" not in out[0].wire()


@pytest.mark.parametrize(
    ("existing", "added", "expected_types"),
    [
        ([], "Ready", ["Ready"]),
        (["Ready"], "Provisioned", ["Provisioned", "Ready"]),
        (["Provisioned", "Ready"], "DNSVerified", ["DNSVerified", "Provisioned", "Ready"]),
        (
            ["DNSVerified", "Provisioned", "Ready"],
            "Provisioned",
            ["DNSVerified", "Provisioned", "Ready"],
        ),
        # An unsorted list from elsewhere comes back sorted.
        (["Ready", "BackupHealthy"], "Ready", ["BackupHealthy", "Ready"]),
    ],
)
def test_list_stays_sorted_and_unique_by_type(
    existing: list[str], added: str, expected_types: list[str]
) -> None:
    before = [entry(t, "True") for t in existing]
    after = set_condition(before, Cond(added, False, "R", "m"), generation=1, now=T1)
    assert [c.type for c in after] == expected_types
    assert find(after, added).status == "False"  # type: ignore[union-attr]
    # Other conditions are untouched.
    for c in after:
        if c.type != added:
            assert c == entry(c.type, "True")


@pytest.mark.parametrize(
    ("conditions", "type_", "expected"),
    [
        ([], "Ready", False),
        ([entry("Ready", "True")], "Ready", True),
        ([entry("Ready", "False")], "Ready", False),
        ([entry("Ready", "Unknown")], "Ready", False),
        ([entry("Provisioned", "True")], "Ready", False),
    ],
)
def test_is_true(conditions: list[Condition], type_: str, expected: bool) -> None:
    assert is_true(conditions, type_) is expected


@pytest.mark.parametrize(
    ("before", "after", "reported"),
    [
        pytest.param([], [entry("Ready", "True")], ["Ready"], id="new"),
        pytest.param([entry("Ready", "True")], [entry("Ready", "True")], [], id="unchanged"),
        pytest.param(
            [entry("Ready", "True")], [entry("Ready", "False")], ["Ready"], id="status-flip"
        ),
        pytest.param(
            [entry("Ready", "False", "PodNotReady")],
            [entry("Ready", "False", "Updating")],
            ["Ready"],
            id="reason-change",
        ),
        pytest.param(
            [entry("Ready", "False", "PodNotReady", "waiting (0/1)")],
            [entry("Ready", "False", "PodNotReady", "waiting again (0/1)")],
            [],
            id="message-only-change",
        ),
        pytest.param(
            [
                Condition.model_validate(
                    {**entry("Ready", "True").wire(), "lastTransitionTime": "2020-01-01T00:00:00Z"}
                )
            ],
            [entry("Ready", "True")],
            [],
            id="time-only-change",
        ),
        pytest.param(
            [entry("Provisioned", "True"), entry("Ready", "True")],
            [entry("Provisioned", "False", "PlanNotFound"), entry("Ready", "True")],
            ["Provisioned"],
            id="only-the-changed-one",
        ),
        pytest.param([entry("Ready", "True")], [], [], id="removed-is-not-reported"),
    ],
)
def test_transitions_report_status_or_reason_changes_only(
    before: list[Condition], after: list[Condition], reported: list[str]
) -> None:
    assert [c.type for c in transitions(before, after)] == reported


def test_transitions_return_the_new_condition() -> None:
    new = entry("Ready", "False", "PodNotReady", "waiting")
    assert transitions([entry("Ready", "True")], [new]) == [new]
