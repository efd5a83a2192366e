"""The shared edge's maps: every file's exact bytes for a small fleet, catch-alls,
aliases, suspension, domain conflicts by creation order, deleted servers, invalid
specs, antispam levels, determinism; and DomainsRouted on each server."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from typing import Any

import pytest
from vpes_operator.edge import EdgeMapsError, ServerKey, build, config_map
from vpes_operator.edge import maps as edge_maps
from vpes_operator.edgemaps import unchanged, with_condition
from vpes_operator.models.conditions import ConditionType, Reason
from vpes_operator.models.plan import AntispamLevel
from vpes_operator.models.server import PersonalMailServer
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
SETTINGS = OperatorSettings()
SVC = "svc.cluster.local"
PLANS: dict[str, dict[str, Any]] = {
    "basic": {"features": {"antispam": "Off"}},
    "personal": {},  # the default: Standard
    "pro": {"features": {"antispam": "Strict"}},
}


def server(
    namespace: str,
    name: str,
    domains: list[str],
    *,
    created: dt.datetime = T0,
    plan: str = "personal",
    deleting: bool = False,
    **spec: Any,
) -> PersonalMailServer:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{namespace}-{name}",
        "generation": 3,
        "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if deleting:
        meta["deletionTimestamp"] = (created + dt.timedelta(hours=1)).isoformat()
    body = {
        "metadata": meta,
        "spec": {"plan": plan, "owner": {"email": f"{name}@owner.example"}, "domains": domains}
        | spec,
    }
    return PersonalMailServer.model_validate(body)


def fleet() -> list[PersonalMailServer]:
    """Alice: two domains, aliases (bare and full), a forward, a catch-all on one domain,
    a postmaster of her own on the other. Bob: suspended, on a Strict plan. Carol: Off."""
    alice = server(
        "t-alice",
        "mail",
        ["alice.example", "alice.test"],
        mailboxes=[
            {"address": "alice@alice.example", "aliases": ["info", "sales@alice.test"]},
            {"address": "postmaster@alice.test"},
        ],
        forwards=[{"from": "shop@alice.example", "to": ["someone@elsewhere.example"]}],
        catchAll=[{"domain": "alice.test", "to": "alice@alice.example"}],
    )
    bob = server(
        "t-bob",
        "bob",
        ["bob.example"],
        created=T0 + dt.timedelta(minutes=1),
        plan="pro",
        suspended=True,
        mailboxes=[{"address": "bob@bob.example"}],
    )
    carol = server(
        "t-carol",
        "carol",
        ["carol.example"],
        plan="basic",
        mailboxes=[{"address": "c@carol.example"}],
    )
    return [alice, bob, carol]


def lines(*rows: str) -> str:
    return "".join(f"{r}\n" for r in rows)


def test_every_file_of_a_small_fleet_exactly() -> None:
    edge = build(fleet(), PLANS, SETTINGS)
    files = edge.maps.files
    assert files["domains"] == lines(
        "alice.example t-alice/mail",
        "alice.test t-alice/mail",
        "bob.example t-bob/bob",
        "carol.example t-carol/carol",
    )
    assert files["recipients"] == lines(
        "@alice.test OK",  # the catch-all
        "alice@alice.example OK",
        "bob@bob.example OK",
        "c@carol.example OK",
        "info@alice.example OK",  # a bare alias: in every domain of the server
        "info@alice.test OK",
        "postmaster@alice.example OK",  # RFC 5321: forwarded to the owner
        "postmaster@alice.test OK",  # a mailbox of its own
        "postmaster@bob.example OK",
        "postmaster@carol.example OK",
        "sales@alice.test OK",  # a full-address alias
        "shop@alice.example OK",  # a forward's source
    )
    assert files["transport"] == lines(
        f"alice.example smtp:[mail.t-alice.{SVC}]:25",
        f"alice.test smtp:[mail.t-alice.{SVC}]:25",
        f"bob.example smtp:[bob.t-bob.{SVC}]:25",
        f"carol.example smtp:[carol.t-carol.{SVC}]:25",
    )
    assert files["access"] == lines(
        "bob.example 450 4.7.1 bob.example: this mail server is suspended, try again later"
    )
    assert files["antispam"] == lines(
        "alice.example standard",
        "alice.test standard",
        "bob.example strict",
        "carol.example off",
    )
    assert files["proxy"] == lines(
        f"alice.example:::::::proxy=y host=mail.t-alice.{SVC} nopassword=y",
        f"alice.test:::::::proxy=y host=mail.t-alice.{SVC} nopassword=y",
        f"bob.example:::::::proxy=y host=bob.t-bob.{SVC} nopassword=y",
        f"carol.example:::::::proxy=y host=carol.t-carol.{SVC} nopassword=y",
    )
    digest = hashlib.sha256()
    for name in sorted(edge_maps.FILES):
        digest.update(f"{name}\0{files[name]}\0".encode())
    assert files["version"] == digest.hexdigest() + "\n"
    assert edge.maps.version == digest.hexdigest()
    assert edge.maps.domain_count == 4
    assert sorted(files) == sorted([*edge_maps.FILES, "version", "webmail-domains"])


def test_the_cluster_domain_is_a_setting() -> None:
    settings = OperatorSettings(cluster_domain="k8s.example.internal")
    files = build(fleet()[2:], PLANS, settings).maps.files
    assert files["transport"] == lines(
        "carol.example smtp:[carol.t-carol.svc.k8s.example.internal]:25"
    )


def test_same_fleet_in_any_order_gives_the_same_bytes() -> None:
    first = build(fleet(), PLANS, SETTINGS).maps
    for seed in range(5):
        shuffled = fleet()
        random.Random(seed).shuffle(shuffled)
        assert build(shuffled, dict(reversed(PLANS.items())), SETTINGS).maps == first


def test_a_change_of_one_mailbox_changes_the_recipients_and_the_version() -> None:
    before = build(fleet(), PLANS, SETTINGS).maps
    changed = fleet()
    changed[2] = server("t-carol", "carol", ["carol.example"], plan="basic",
                        mailboxes=[{"address": "dave@carol.example"}])  # fmt: skip
    after = build(changed, PLANS, SETTINGS).maps
    assert "dave@carol.example OK\n" in after.files["recipients"]
    assert "c@carol.example" not in after.files["recipients"]
    assert after.version != before.version
    assert after.files["domains"] == before.files["domains"]


@pytest.mark.parametrize("level", list(AntispamLevel))
def test_every_antispam_level_maps(level: AntispamLevel) -> None:
    plans = {"p": {"features": {"antispam": level.value}}}
    files = build([server("ns", "s", ["a.example"], plan="p")], plans, SETTINGS).maps.files
    assert files["antispam"] == f"a.example {level.value.lower()}\n"
    assert edge_maps.ANTISPAM[level] == level.value.lower()


@pytest.mark.parametrize("plans", [{}, {"personal": {"features": {"antispam": "Loud"}}}])
def test_a_missing_or_invalid_plan_is_standard(plans: dict[str, Any]) -> None:
    files = build([server("ns", "s", ["a.example"])], plans, SETTINGS).maps.files
    assert files["antispam"] == "a.example standard\n"


def test_a_taken_domain_goes_to_the_server_created_first() -> None:
    first = server("t-old", "old", ["shared.example", "old.example"],
                   created=T0, mailboxes=[{"address": "o@shared.example"}])  # fmt: skip
    later = server("a-new", "new", ["shared.example", "new.example"],
                   created=T0 + dt.timedelta(days=1),
                   mailboxes=[{"address": "n@shared.example", "aliases": ["info"]},
                              {"address": "x@new.example"}])  # fmt: skip
    edge = build([later, first], {}, SETTINGS)
    files = edge.maps.files
    assert files["domains"] == lines(
        "new.example a-new/new", "old.example t-old/old", "shared.example t-old/old"
    )
    # Nothing of the later server for the taken domain: not its mailbox, not the bare
    # alias's expansion, not its postmaster.
    assert files["recipients"] == lines(
        "info@new.example OK",
        "o@shared.example OK",
        "postmaster@new.example OK",
        "postmaster@old.example OK",
        "postmaster@shared.example OK",
        "x@new.example OK",
    )
    assert "shared.example smtp:[old.t-old." in files["transport"]
    assert "shared.example smtp:[new." not in files["transport"]
    lost = edge.conditions[ServerKey("a-new", "new")]
    assert (lost.type, lost.status, lost.reason) == (
        ConditionType.DOMAINS_ROUTED,
        False,
        Reason.DOMAIN_TAKEN,
    )
    assert lost.message == (
        "shared.example is already served by t-old/old (created earlier); remove it from "
        "spec.domains or ask the provider"
    )
    kept = edge.conditions[ServerKey("t-old", "old")]
    assert (kept.status, kept.reason) == (True, Reason.ROUTED)
    assert kept.message == "the edge routes mail for all 2 domains to this server"


def test_a_tie_in_the_same_second_is_decided_by_namespace_and_name() -> None:
    b = server("b", "s", ["tie.example"])
    a = server("a", "s", ["tie.example", "other.example"])
    for order in ([a, b], [b, a]):
        edge = build(order, {}, SETTINGS)
        assert "tie.example a/s\n" in edge.maps.files["domains"]
        message = edge.conditions[ServerKey("b", "s")].message
        assert message.startswith("tie.example is already served by a/s (created in the same")


def test_several_taken_domains_are_all_named() -> None:
    owner1 = server("n1", "one", ["x.example"], created=T0)
    owner2 = server("n2", "two", ["y.example"], created=T0 + dt.timedelta(seconds=1))
    late = server("n3", "late", ["x.example", "y.example"], created=T0 + dt.timedelta(hours=1))
    cond = build([late, owner1, owner2], {}, SETTINGS).conditions[ServerKey("n3", "late")]
    assert cond.message == (
        "x.example is already served by n1/one (created earlier), y.example is already "
        "served by n2/two (created earlier); remove them from spec.domains or ask the provider"
    )
    assert "late" not in build([late, owner1, owner2], {}, SETTINGS).maps.files["domains"]


def test_a_server_being_deleted_routes_nothing_and_its_domain_moves_on() -> None:
    going = server("t-old", "old", ["shared.example"], deleting=True,
                   mailboxes=[{"address": "o@shared.example"}])  # fmt: skip
    staying = server("t-new", "new", ["shared.example"], created=T0 + dt.timedelta(days=1),
                     mailboxes=[{"address": "n@shared.example"}])  # fmt: skip
    edge = build([going, staying], {}, SETTINGS)
    assert edge.maps.files["domains"] == "shared.example t-new/new\n"
    assert "o@shared.example" not in edge.maps.files["recipients"]
    assert "n@shared.example OK\n" in edge.maps.files["recipients"]
    assert ServerKey("t-old", "old") not in edge.conditions
    assert edge.conditions[ServerKey("t-new", "new")].status is True


def test_no_servers_give_empty_maps() -> None:
    edge = build([], {}, SETTINGS)
    assert {k: v for k, v in edge.maps.files.items() if k != "version"} == {
        name: "" for name in [*edge_maps.FILES, "webmail-domains"]
    }
    assert edge.maps.domain_count == 0


def test_an_invalid_spec_keeps_its_previous_recipients_or_defers() -> None:
    good = server("ns", "s", ["a.example"], mailboxes=[{"address": "m@a.example"}])
    previous = build([good], {}, SETTINGS).maps.files
    # An alias that is also a forward's source: the tenant refuses it too.
    bad = server("ns", "s", ["a.example"],
                 mailboxes=[{"address": "m@a.example", "aliases": ["f@a.example"]}],
                 forwards=[{"from": "f@a.example", "to": ["x@elsewhere.example"]}])  # fmt: skip
    kept = build([bad], {}, SETTINGS, previous=previous)
    assert kept.maps.files["recipients"] == previous["recipients"]
    assert kept.maps.files["domains"] == "a.example ns/s\n"
    assert kept.maps.files["access"] == ""
    assert ServerKey("ns", "s") in kept.invalid
    # Nothing to keep (a new server, or the domain went elsewhere before): mail waits.
    for prev in (None, {"domains": "a.example other/s\n", "recipients": "m@a.example OK\n"}):
        fresh = build([bad], {}, SETTINGS, previous=prev)
        assert fresh.maps.files["recipients"] == ""
        assert fresh.maps.files["access"] == (
            "a.example 450 4.3.0 a.example: this mail server is being configured, try again later\n"
        )


def test_a_value_that_is_no_domain_name_is_never_a_key() -> None:
    odd = server("ns", "s", ["ok.example"])
    odd.spec["domains"] = ["ok.example", "bad domain\nx OK", 7]
    files = build([odd], {}, SETTINGS).maps.files
    assert files["domains"] == "ok.example ns/s\n"


def test_maps_too_large_for_a_configmap_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge_maps, "MAX_BYTES", 200)
    with pytest.raises(EdgeMapsError, match="more than a ConfigMap holds"):
        build(fleet(), PLANS, SETTINGS)


def test_the_configmap() -> None:
    settings = OperatorSettings(operator_namespace="vpes-x", edge_maps_name="maps")
    maps = build(fleet(), PLANS, settings).maps
    cm = config_map(maps, settings)
    assert cm["metadata"]["name"] == "maps"
    assert cm["metadata"]["namespace"] == "vpes-x"
    labels = cm["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "vpes"
    assert labels["vpes.io/component"] == "edge-maps"
    assert cm["data"] == maps.files
    assert OperatorSettings().edge_maps_name == "vpes-edge-maps"
    assert OperatorSettings().cluster_domain == "cluster.local"


def test_domains_routed_is_written_only_when_it_changes() -> None:
    s = server("ns", "s", ["a.example"])
    cond = build([s], {}, SETTINGS).conditions[ServerKey("ns", "s")]
    status = with_condition(s, cond, T0)
    assert status is not None
    written = s.model_copy(update={"status": status})
    assert unchanged(written, cond)
    assert with_condition(written, cond, T0 + dt.timedelta(hours=1)) is None
    (entry,) = status.conditions
    assert entry.type == "DomainsRouted" and entry.status == "True"
    assert entry.observed_generation == 3
    assert entry.message == "the edge routes mail for its domain to this server"
