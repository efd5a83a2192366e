"""The forced rollback a StatefulSet does not do: which pods are stuck."""

from __future__ import annotations

import pytest
from vpes_operator.models.kube import Pod
from vpes_operator.rollout import stuck

from .test_fleet_probe import NEW, pod

pytestmark = pytest.mark.unit

OLD = "registry.test/vpes-tenant:1"


@pytest.mark.parametrize(
    ("pods", "wanted", "replaced"),
    [
        ([pod(NEW, ready=False)], OLD, True),  # the bad image's pod, the rollback wants OLD
        ([pod(NEW, running=False, ready=False)], OLD, True),  # never started (pull failed)
        ([pod(NEW, ready=True)], OLD, False),  # ready: the rolling update replaces it
        ([pod(OLD, ready=False)], OLD, False),  # on the image wanted: it may be starting
        ([pod(NEW, ready=False, deletionTimestamp="2026-12-07T03:00:00Z")], OLD, False),
    ],
)
def test_stuck(pods: list[Pod], wanted: str, replaced: bool) -> None:
    got = stuck(pods, wanted)
    assert (got == pods) is replaced and (got == []) is not replaced
