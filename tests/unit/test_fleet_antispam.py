"""An antispam FleetUpgrade's pure parts: the spec's one target, the rule files' names,
the canary Deployment made from the live one, the gate's verdicts, and the planner's
steps (canary, promotion, rollback, pause)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from vpes_operator.fleet import antispam
from vpes_operator.fleet.antispam_plan import CANARY, ROLLOUT, Inputs, Observed, plan
from vpes_operator.fleet.planner import Health
from vpes_operator.models.fleet import FleetPhase, FleetUpgradeSpec, FleetUpgradeStatus
from vpes_operator.models.kube import Pod

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 12, 7, 6, 0, tzinfo=dt.UTC)
RULES = {"multimap.conf": "WORD { type = header; }\n", "words.map": "/zorblax/i\n"}
OLD_RULES = {"composites.conf": "OLD { expression = A & B; }\n"}


# --- the spec ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [{}, {"image": "r/t:1", "antispam": {"rulesConfigMap": "rules"}}],
    ids=["neither", "both"],
)
def test_an_upgrade_moves_exactly_one_thing(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="moves exactly one thing: set either image"):
        FleetUpgradeSpec.model_validate(spec)


def test_an_antispam_upgrade_has_no_image() -> None:
    spec = FleetUpgradeSpec.model_validate({"antispam": {"rulesConfigMap": "rules-2"}})
    assert spec.antispam is not None and spec.antispam.rules_config_map == "rules-2"
    with pytest.raises(ValueError, match="moves the edge's antispam rules, not an image"):
        _ = spec.target_image


def test_the_rules_config_map_must_be_a_name() -> None:
    with pytest.raises(ValidationError, match="String should match pattern"):
        FleetUpgradeSpec.model_validate({"antispam": {"rulesConfigMap": "Rules/x"}})


# --- the rule files ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "no rule files"),
        ({"../multimap.conf": "x"}, "key '../multimap.conf' is not a rule file name"),
        ({".hidden.conf": "x"}, "key '.hidden.conf' is not a rule file name"),
        ({"rules.lua": "x"}, "ending in .conf, .inc or .map"),
        ({"multimap": "x"}, "key 'multimap' is not a rule file name"),
        ({"options.inc": "x"}, "key 'options.inc' is a file the Rspamd image ships"),
        ({"rbl.conf": "x"}, "key 'rbl.conf' is a file the Rspamd image ships"),
        ({"big.map": "x" * (antispam.MAX_RULES_BYTES + 1)}, "at most 262144 are supported"),
    ],
)
def test_bad_rule_files_are_named(data: dict[str, str], message: str) -> None:
    problem = antispam.check_rules(data)
    assert problem is not None and message in problem


def test_good_rule_files_pass() -> None:
    assert antispam.check_rules(RULES) is None
    assert antispam.check_rules({"groups.conf": "", "local_bl.inc": "", "a-b_c.1.map": ""}) is None


def test_the_image_s_own_drop_ins_are_those_it_ships() -> None:
    conf = REPO / "images" / "rspamd" / "conf"
    shipped = {p.name for d in ("local.d", "override.d") for p in (conf / d).iterdir()}
    assert shipped == antispam.IMAGE_DROP_INS


def test_the_hash_follows_names_and_content_not_order() -> None:
    digest = antispam.rules_hash(RULES)
    assert digest == antispam.rules_hash(dict(reversed(list(RULES.items()))))
    assert digest != antispam.rules_hash({**RULES, "words.map": "/other/i\n"})
    assert digest != antispam.rules_hash({"multimap.conf": RULES["multimap.conf"]})
    assert len(digest) == 16


# --- the canary Deployment -----------------------------------------------------------

SELECTOR = {"app.kubernetes.io/part-of": "vpes", "vpes.io/component": "antispam"}
LIVE: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "vpes-antispam", "namespace": "vpes-system", "generation": 3},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": dict(SELECTOR)},
        "template": {
            "metadata": {
                "labels": {**SELECTOR, "helm.sh/chart": "vpes-0.1.0"},
                "annotations": {"checksum/secret": "abc"},
            },
            "spec": {
                "automountServiceAccountToken": False,
                "containers": [{"name": "rspamd", "image": "r/rspamd:1", "args": ["rspamd"]}],
                "volumes": [
                    {"name": "maps", "configMap": {"name": "vpes-edge-maps", "optional": True}},
                    {
                        "name": "antispam-rules",
                        "configMap": {"name": "vpes-antispam-rules", "optional": True},
                    },
                    {"name": "run", "emptyDir": {}},
                ],
            },
        },
    },
}
OWNER = {"apiVersion": "vpes.io/v1alpha1", "kind": "FleetUpgrade", "name": "f", "uid": "u"}


def canary(live: dict[str, Any] = LIVE) -> dict[str, Any]:
    return antispam.canary_deployment(
        live,
        name="vpes-antispam-canary",
        config_map="vpes-antispam-rules-canary",
        digest="d1",
        labels={"vpes.io/component": "antispam-canary"},
        owner=OWNER,
    )


def test_the_canary_is_one_live_pod_told_apart_reading_the_canary_rules() -> None:
    before = copy.deepcopy(LIVE)
    made = canary()
    assert before == LIVE  # the live Deployment as read is not changed
    spec = made["spec"]
    assert spec["replicas"] == 1
    assert spec["selector"]["matchLabels"] == {**SELECTOR, antispam.LABEL_TRACK: "canary"}
    meta = spec["template"]["metadata"]
    assert meta["labels"][antispam.LABEL_TRACK] == "canary"
    assert set(SELECTOR.items()) <= set(meta["labels"].items())  # the Service takes it
    assert meta["annotations"] == {"checksum/secret": "abc", antispam.ANNOTATION_RULES: "d1"}
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["antispam-rules"]["configMap"] == {
        "name": "vpes-antispam-rules-canary",
        "optional": False,
    }
    assert volumes["maps"] == LIVE["spec"]["template"]["spec"]["volumes"][0]
    pod = spec["template"]["spec"]
    assert pod["containers"] == LIVE["spec"]["template"]["spec"]["containers"]
    assert made["metadata"]["ownerReferences"] == [OWNER]
    assert made["metadata"]["namespace"] == "vpes-system"


def test_a_live_deployment_without_the_rules_volume_is_refused_with_a_message() -> None:
    old = copy.deepcopy(LIVE)
    old["spec"]["template"]["spec"]["volumes"].pop(1)
    with pytest.raises(ValueError, match="has no volume antispam-rules"):
        canary(old)


def test_the_annotation_patch_names_or_removes_the_hash() -> None:
    assert antispam.annotation_patch("d1") == {
        "spec": {"template": {"metadata": {"annotations": {antispam.ANNOTATION_RULES: "d1"}}}}
    }
    removed = antispam.annotation_patch(None)["spec"]["template"]["metadata"]["annotations"]
    assert removed == {antispam.ANNOTATION_RULES: None}


# --- the gate's verdicts -------------------------------------------------------------


def pod(is_ready: bool, **container: Any) -> Pod:
    return Pod.model_validate(
        {
            "metadata": {"name": "c-1"},
            "status": {
                "podIP": "10.0.0.9",
                "conditions": [{"type": "Ready", "status": "True" if is_ready else "False"}],
                "containerStatuses": [{"name": "rspamd", **container}],
            },
        }
    )


def test_the_canary_pod_verdict() -> None:
    assert antispam.pod_verdict([]) == ("no canary pod yet", None)
    assert antispam.pod_verdict([pod(True, ready=True)]) == (None, "10.0.0.9")
    why, address = antispam.pod_verdict(
        [
            pod(
                False,
                restartCount=3,
                state={"waiting": {"reason": "CrashLoopBackOff"}},
                lastState={"terminated": {"exitCode": 2, "message": "ucl parser error: line 2\n"}},
            )
        ]
    )
    assert address is None and why is not None
    assert "c-1 is not ready (rspamd: CrashLoopBackOff, 3 restarts)" in why
    assert "it exited 2: ucl parser error: line 2" in why


def deployment(digest: str | None, generation: int = 2, **status: int) -> dict[str, Any]:
    annotations = {antispam.ANNOTATION_RULES: digest} if digest else {}
    return {
        "metadata": {"name": "vpes-antispam", "generation": generation},
        "spec": {"replicas": 2, "template": {"metadata": {"annotations": annotations}}},
        "status": status,
    }


FULL = {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2}


@pytest.mark.parametrize(
    ("live", "why"),
    [
        (deployment("old", **FULL, availableReplicas=2), "does not name the rules d1 yet"),
        (deployment("d1", 3, **FULL, availableReplicas=2), "the rollout has not started yet"),
        (deployment("d1", **{**FULL, "updatedReplicas": 1}), "1 of 2 pods run the new rules"),
        (deployment("d1", **{**FULL, "replicas": 3}), "2 of 2 pods run the new rules"),
        (deployment("d1", **{**FULL, "readyReplicas": 1}), "1 of 2 pods with the new rules"),
        (deployment("d1", **FULL, availableReplicas=1), "2 of 2 pods with the new rules"),
        (deployment("d1", **FULL, availableReplicas=2), None),
    ],
)
def test_the_rollout_verdict(live: dict[str, Any], why: str | None) -> None:
    got = antispam.rollout_verdict(live, "d1")
    assert (got is None) if why is None else (got is not None and why in got), got


@pytest.mark.parametrize(
    ("gtube", "ham", "why"),
    [
        ("reject", "no action", None),
        ("reject", "add header", None),
        ("no action", "no action", "did not reject GTUBE (its action: no action)"),
        (None, None, "did not reject GTUBE"),
        ("reject", "reject", "rejected a plain message"),
    ],
)
def test_the_scan_verdict(gtube: str | None, ham: str | None, why: str | None) -> None:
    got = antispam.scan_verdict(gtube, ham)
    assert (got is None) if why is None else (got is not None and why in got), got


# --- the planner ---------------------------------------------------------------------

SPEC = FleetUpgradeSpec.model_validate(
    {"antispam": {"rulesConfigMap": "rules"}, "healthTimeoutSeconds": 60}
)
DIGEST = antispam.rules_hash(RULES)
OLD_DIGEST = antispam.rules_hash(OLD_RULES)


def seen(**changes: Any) -> Observed:
    base: dict[str, Any] = {
        "source": dict(RULES),
        "tried": None,
        "live_rules": dict(OLD_RULES),
        "live_hash": OLD_DIGEST,
        "deployment": True,
        "canary": False,
        "health": None,
    }
    return Observed(**{**base, **changes})


def step(
    status: FleetUpgradeStatus,
    observed: Observed,
    *,
    at: dt.datetime = T0,
    spec: FleetUpgradeSpec = SPEC,
) -> Any:
    return plan(
        Inputs(
            spec=spec,
            status=status,
            observed=observed,
            now=at,
            source_name="vpes-system/rules",
            live_config_map="vpes-system/vpes-antispam-rules",
        )
    )


def test_good_rules_go_canary_then_promotion_then_succeeded() -> None:
    started = step(FleetUpgradeStatus(), seen())
    assert started.status.phase == FleetPhase.CANARY and started.status.current_wave == CANARY
    assert started.writes.canary_rules == RULES
    assert started.writes.live_rules is None and not started.writes.set_annotation
    assert started.status.antispam is not None
    assert started.status.antispam.target_hash == DIGEST
    assert started.status.antispam.files == ["multimap.conf", "words.map"]
    assert [e.reason for e in started.events] == ["CanaryStarted"]

    waiting = step(started.status, seen(tried=RULES, canary=True, health=Health(False, "x")))
    assert waiting.status.phase == FleetPhase.CANARY and "waiting for the health gate: x" in (
        waiting.status.message or ""
    )
    assert waiting.writes.canary_rules is None  # already there: nothing written again

    later = T0 + dt.timedelta(seconds=20)
    promoted = step(started.status, seen(tried=RULES, canary=True, health=Health(True)), at=later)
    assert promoted.status.phase == FleetPhase.ROLLING
    assert promoted.status.current_wave == ROLLOUT and promoted.status.wave_started_at == later
    assert promoted.writes.live_rules == RULES
    assert promoted.writes.set_annotation and promoted.writes.annotation == DIGEST
    assert promoted.status.antispam is not None
    assert promoted.status.antispam.previous_rules == OLD_RULES
    assert promoted.status.antispam.previous_hash == OLD_DIGEST
    assert [e.reason for e in promoted.events] == ["Promoted"]

    rolled = seen(tried=RULES, canary=True, live_rules=RULES, live_hash=DIGEST)
    rolling = step(promoted.status, rolled)  # the gate unchecked: still rolling
    assert rolling.status.phase == FleetPhase.ROLLING and rolling.writes.live_rules is None
    done = step(promoted.status, dataclasses.replace(rolled, health=Health(True)))
    assert done.status.phase == FleetPhase.SUCCEEDED and done.terminal
    assert done.writes.remove_canary and done.writes.live_rules is None
    assert done.status.antispam is not None
    assert done.status.antispam.live_hash == DIGEST
    assert done.status.antispam.previous_rules is None
    assert "runs the rules" in (done.status.message or "")
    assert [e.reason for e in done.events] == ["Succeeded"]


def test_a_canary_that_never_passes_is_removed_and_nothing_live_changes() -> None:
    started = step(FleetUpgradeStatus(), seen())
    failing = seen(tried=RULES, canary=True, health=Health(False, "it exited 2: ucl parser"))
    early = step(started.status, failing, at=T0 + dt.timedelta(seconds=59))
    assert early.status.phase == FleetPhase.CANARY and not early.writes.remove_canary
    out = step(started.status, failing, at=T0 + dt.timedelta(seconds=60))
    assert out.status.phase == FleetPhase.ROLLED_BACK
    assert out.writes.remove_canary
    assert out.writes.live_rules is None and not out.writes.set_annotation
    assert "canary with the new rules failed the health gate within 60s" in (
        out.status.message or ""
    )
    assert "ucl parser" in (out.status.message or "")
    assert [e.type for e in out.events] == ["Warning"]


def test_a_failed_rollout_restores_the_previous_rules_and_annotation() -> None:
    started = step(FleetUpgradeStatus(), seen())
    promoted = step(started.status, seen(tried=RULES, canary=True, health=Health(True)))
    failing = seen(
        tried=RULES, canary=True, live_rules=RULES, live_hash=DIGEST, health=Health(False, "1 of 2")
    )
    out = step(promoted.status, failing, at=T0 + dt.timedelta(seconds=61))
    assert out.status.phase == FleetPhase.ROLLED_BACK
    assert out.writes.live_rules == OLD_RULES
    assert out.writes.set_annotation and out.writes.annotation == OLD_DIGEST
    assert out.writes.remove_canary
    assert f"rolled back to the previous rules ({OLD_DIGEST})" in (out.status.message or "")


def test_a_first_rollout_rolls_back_to_no_rules_and_no_annotation() -> None:
    first = seen(live_rules={}, live_hash=None)
    started = step(FleetUpgradeStatus(), first)
    promoted = step(started.status, dataclasses.replace(first, health=Health(True)))
    out = step(
        promoted.status,
        seen(live_rules=RULES, live_hash=DIGEST, health=Health(False, "x")),
        at=T0 + dt.timedelta(seconds=61),
    )
    assert out.writes.live_rules == {} and out.writes.set_annotation
    assert out.writes.annotation is None


def test_a_promotion_the_last_step_could_not_write_is_written_again() -> None:
    started = step(FleetUpgradeStatus(), seen())
    promoted = step(started.status, seen(tried=RULES, canary=True, health=Health(True)))
    again = step(promoted.status, seen(tried=RULES, canary=True))  # live still old
    assert again.writes.live_rules == RULES and again.writes.annotation == DIGEST


def test_paused_holds_before_the_canary_and_before_the_promotion() -> None:
    paused = SPEC.model_copy(update={"paused": True})
    held = step(FleetUpgradeStatus(), seen(), spec=paused)
    assert held.status.phase == FleetPhase.PAUSED and held.status.current_wave == 0
    assert held.writes.canary_rules is None
    started = step(FleetUpgradeStatus(), seen())
    passed = seen(tried=RULES, canary=True, health=Health(True))
    holding = step(started.status, passed, spec=paused)
    assert holding.status.phase == FleetPhase.PAUSED
    assert "paused before the promotion" in (holding.status.message or "")
    assert holding.writes.live_rules is None
    resumed = step(holding.status, passed)
    assert resumed.status.phase == FleetPhase.ROLLING


@pytest.mark.parametrize(
    ("observed", "phase", "message"),
    [
        (seen(source={"options.inc": "x"}), FleetPhase.FAILED, "key 'options.inc' is a file"),
        (seen(source=None), FleetPhase.PENDING, "waiting for the ConfigMap vpes-system/rules"),
        (seen(deployment=False), FleetPhase.FAILED, "edge.antispam.enabled is false"),
        (seen(live_hash=DIGEST), FleetPhase.SUCCEEDED, "already runs these rules"),
        (seen(blocked_by="older"), FleetPhase.PENDING, "FleetUpgrade older is moving"),
    ],
    ids=["bad-key", "missing", "no-antispam", "already-live", "another-runs"],
)
def test_what_stops_an_upgrade_before_its_canary(
    observed: Observed, phase: FleetPhase, message: str
) -> None:
    out = step(FleetUpgradeStatus(), observed)
    assert out.status.phase == phase and message in (out.status.message or "")
    assert out.writes.canary_rules is None


def test_rules_changed_during_the_canary_roll_it_back() -> None:
    started = step(FleetUpgradeStatus(), seen())
    changed = {"multimap.conf": "OTHER {}\n"}
    out = step(started.status, seen(source=changed, tried=changed, canary=True))
    assert out.status.phase == FleetPhase.ROLLED_BACK and out.writes.remove_canary
    assert "changed while its canary ran" in (out.status.message or "")


def test_a_canary_the_last_step_could_not_make_is_made_from_the_admin_s_rules() -> None:
    started = step(FleetUpgradeStatus(), seen())
    out = step(started.status, seen())  # neither the canary nor its ConfigMap exist
    assert out.writes.canary_rules == RULES and out.status.phase == FleetPhase.CANARY


def test_a_terminal_upgrade_does_nothing() -> None:
    done = FleetUpgradeStatus(phase=FleetPhase.ROLLED_BACK)
    out = step(done, seen(health=Health(True)))
    assert out.status == done and not out.events and out.writes.canary_rules is None


def test_a_pod_that_refused_its_rules_is_told_apart() -> None:
    refused = pod(False, lastState={"terminated": {"exitCode": antispam.REFUSED, "message": "x"}})
    crashed = pod(False, lastState={"terminated": {"exitCode": 1, "message": "rspamd died"}})
    starting = pod(False, state={"waiting": {"reason": "ContainerCreating"}})
    assert antispam.refused([starting, refused])
    assert not antispam.refused([crashed, starting])


def test_rules_rspamd_refused_roll_the_canary_back_at_once() -> None:
    started = step(FleetUpgradeStatus(), seen())
    refused = Health(False, "it exited 2: ucl parser error", final=True)
    out = step(started.status, seen(tried=RULES, canary=True, health=refused))
    assert out.status.phase == FleetPhase.ROLLED_BACK and out.writes.remove_canary
    assert out.status.message == (
        "Rspamd refused the new rules in the canary (it exited 2: ucl parser error); "
        "the canary was removed, the live rules are unchanged"
    )


def test_a_deleted_upgrade_removes_its_canary_and_takes_back_promoted_rules() -> None:
    from vpes_operator.fleet.antispam_plan import abandon

    assert abandon(FleetUpgradeStatus()) == abandon(FleetUpgradeStatus(phase=FleetPhase.PENDING))
    assert not abandon(FleetUpgradeStatus()).remove_canary  # nothing started
    started = step(FleetUpgradeStatus(), seen())
    writes = abandon(started.status)
    assert writes.remove_canary and writes.live_rules is None and not writes.set_annotation
    promoted = step(started.status, seen(tried=RULES, canary=True, health=Health(True)))
    writes = abandon(promoted.status)
    assert writes.remove_canary and writes.live_rules == OLD_RULES
    assert writes.set_annotation and writes.annotation == OLD_DIGEST
    done = step(
        promoted.status,
        seen(tried=RULES, canary=True, live_rules=RULES, live_hash=DIGEST, health=Health(True)),
    )
    assert done.status.phase == FleetPhase.SUCCEEDED
    assert abandon(done.status) == abandon(FleetUpgradeStatus())  # ended: nothing to undo
