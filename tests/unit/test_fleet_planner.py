"""The fleet upgrade's planner: waves, canary, maxUnavailable, pause and resume, servers
busy with a backup, servers claimed by another upgrade, and the rollback of a wave."""

from __future__ import annotations

import pytest
from vpes_operator.fleet import planner
from vpes_operator.models.fleet import FleetUpgradeStatus

from .fleet_support import NEW, OLD, Fleet, healthy, never

pytestmark = pytest.mark.unit


def test_a_canary_then_waves_of_max_unavailable_move_every_server() -> None:
    fleet = Fleet.of(5, canary=1, maxUnavailable=2)
    plan = fleet.step()
    assert fleet.status.phase == "Canary"
    assert fleet.wave() == ["s00"]
    assert [(m.name, m.image, m.claim) for m in plan.moves] == [("s00", NEW, True)]
    assert [e.reason for e in plan.events] == ["WaveStarted"]
    assert fleet.status.current_wave == 1

    plan = fleet.step()  # the canary passes the gate: the next wave starts at once
    assert [e.reason for e in plan.events] == ["WaveSucceeded", "WaveStarted"]
    assert fleet.status.phase == "Rolling"
    assert fleet.wave() == ["s03", "s01"]  # two at a time, by namespace then name
    fleet.step()
    assert fleet.wave() == ["s04", "s02"]
    plan = fleet.step()
    assert fleet.status.phase == "Succeeded"
    assert fleet.on(NEW) == ["s00", "s01", "s02", "s03", "s04"]
    assert all(s.claimed_by is None for s in fleet.servers.values())  # claims given back
    assert (fleet.status.total, fleet.status.upgraded, fleet.status.pending) == (5, 5, 0)
    assert [e.reason for e in plan.events] == ["WaveSucceeded", "Succeeded"]
    assert fleet.step().moves == []  # a terminal upgrade does nothing more


def test_a_wave_waits_for_the_gate_and_no_second_wave_starts_meanwhile() -> None:
    fleet = Fleet.of(4, canary=1, maxUnavailable=3, healthTimeoutSeconds=600)
    fleet.health = never
    fleet.step()
    for _ in range(5):
        plan = fleet.step(seconds=60)
        assert plan.moves == [] and plan.events == []
    assert fleet.wave() == ["s00"]
    assert "waiting for the health gate of ns0/s00" in (fleet.status.message or "")
    assert (fleet.status.upgraded, fleet.status.pending) == (0, 4)


@pytest.mark.parametrize(
    ("count", "canary", "max_unavailable", "waves"),
    [
        (20, "10%", "25%", [2, 5, 5, 5, 3]),
        (20, "1%", "1%", [1] * 20),  # a percentage rounds up for the canary, never to 0 waves
        (20, 0, 8, [8, 8, 4]),  # no canary: the first wave is a normal one
        (20, "0%", "50%", [10, 10]),
        (3, 5, 1, [3]),  # a canary larger than the fleet is the fleet
    ],
)
def test_wave_sizes(count: int, canary: object, max_unavailable: object, waves: list[int]) -> None:
    fleet = Fleet.of(count, canary=canary, maxUnavailable=max_unavailable)
    sizes = []
    while fleet.status.phase != "Succeeded":
        fleet.step()
        if fleet.status.wave:
            sizes.append(len(fleet.status.wave))
    assert sizes == waves
    assert fleet.status.current_wave == len(waves)


def test_pause_stops_new_waves_but_the_wave_in_flight_is_still_gated() -> None:
    fleet = Fleet.of(4, canary=1, maxUnavailable=1)
    fleet.step()
    fleet.spec = fleet.spec.model_copy(update={"paused": True})
    fleet.health = never
    fleet.step()
    assert fleet.status.phase == "Paused" and fleet.wave() == ["s00"]
    fleet.health = healthy
    plan = fleet.step()
    assert [e.reason for e in plan.events] == ["WaveSucceeded"]
    assert fleet.status.phase == "Paused" and fleet.wave() == []
    assert fleet.step().moves == []
    assert fleet.on(NEW) == ["s00"]
    fleet.spec = fleet.spec.model_copy(update={"paused": False})
    fleet.step()
    assert fleet.status.phase == "Rolling" and fleet.wave() == ["s03"]


def test_a_wave_paused_in_flight_is_still_rolled_back_when_it_fails() -> None:
    fleet = Fleet.of(3, canary=1, healthTimeoutSeconds=60)
    fleet.health = never
    fleet.step()
    fleet.spec = fleet.spec.model_copy(update={"paused": True})
    fleet.step()
    assert fleet.status.phase == "Paused"
    assert "the wave in flight is still checked: wave 1: waiting" in (fleet.status.message or "")
    fleet.step(seconds=60)
    assert fleet.status.phase == "RolledBack" and fleet.on(NEW) == []


def test_a_paused_upgrade_never_starts() -> None:
    fleet = Fleet.of(2, paused=True)
    assert fleet.step().moves == []
    assert fleet.status.phase == "Paused" and fleet.status.current_wave == 0


def test_a_server_being_backed_up_waits_and_moves_once_its_backup_ended() -> None:
    fleet = Fleet.of(3, canary=0, maxUnavailable=2)
    fleet.set("s00", busy="backup Job s00-backup-1")
    fleet.step()
    assert fleet.wave() == ["s01", "s02"]  # others go first
    fleet.step()
    assert fleet.wave() == [] and fleet.status.phase == "Rolling"
    assert "s00 (backup Job s00-backup-1)" in (fleet.status.message or "")
    assert fleet.status.waiting == 1 and fleet.status.pending == 1
    fleet.set("s00", busy=None)
    fleet.step()
    assert fleet.wave() == ["s00"]
    fleet.step()
    assert fleet.status.phase == "Succeeded"


def test_the_first_wave_waits_when_every_server_is_busy() -> None:
    fleet = Fleet.of(1)
    fleet.set("s00", busy="restore restore-1")
    assert fleet.step().moves == []
    assert fleet.status.phase == "Pending"


def test_suspended_servers_move_unchecked_once_a_wave_passed_and_the_upgrade_ends() -> None:
    fleet = Fleet.of(4, canary=1, maxUnavailable=2)
    fleet.set("s01", suspended=True)
    fleet.set("s03", suspended=True)
    fleet.step()
    assert fleet.wave() == ["s00"]  # the canary is a running server
    fleet.step()
    assert fleet.wave() == ["s02"]
    assert fleet.status.waiting == 2
    fleet.step()  # the running ones passed: the suspended ones move, with no claim
    assert fleet.wave() == [] and fleet.on(NEW) == ["s00", "s01", "s02", "s03"]
    assert sorted((d.name, d.reason) for d in fleet.status.deferred) == [
        ("s01", "Suspended"),
        ("s03", "Suspended"),
    ]
    assert all(s.claimed_by is None for s in fleet.servers.values() if s.suspended)
    assert (fleet.status.upgraded, fleet.status.pending, fleet.status.waiting) == (2, 0, 0)
    plan = fleet.step()
    assert fleet.status.phase == "Succeeded"
    assert "2 of them suspended, moved without the health gate" in (fleet.status.message or "")
    assert [e.reason for e in plan.events] == ["Succeeded"]
    assert len(fleet.status.deferred) == 2


def test_suspended_servers_wait_while_no_server_proved_the_image() -> None:
    fleet = Fleet.of(2)
    fleet.set("s00", suspended=True)
    fleet.set("s01", suspended=True)
    assert fleet.step().moves == []
    assert fleet.status.phase == "Pending" and fleet.status.waiting == 2
    assert "ns0/s00 (suspended)" in (fleet.status.message or "")
    assert "once another server proved the image" in (fleet.status.message or "")
    fleet.set("s00", suspended=False)  # resumed: it is the canary
    fleet.step()
    assert fleet.wave() == ["s00"]


def test_a_suspended_server_being_backed_up_waits_for_its_backup() -> None:
    fleet = Fleet.of(2, canary=1)
    fleet.set("s01", suspended=True, busy="backup Job s01-backup-1")
    fleet.step()
    fleet.step()
    assert fleet.on(NEW) == ["s00"] and fleet.status.deferred == []
    assert fleet.status.phase != "Succeeded"
    fleet.set("s01", busy=None)
    fleet.step()
    assert fleet.on(NEW) == ["s00", "s01"]


def test_a_server_claimed_by_another_upgrade_is_refused_and_named() -> None:
    fleet = Fleet.of(3, canary=0, maxUnavailable=3)
    fleet.set("s01", claimed_by="other", image="registry.test/vpes-tenant:3")
    plan = fleet.step()
    assert fleet.wave() == ["s00", "s02"]
    assert (plan.events[0].type, plan.events[0].reason) == ("Warning", "ClaimedByOther")
    assert "ns1/s01: FleetUpgrade other is moving this server" in plan.events[0].message
    assert [(r.name, r.reason) for r in fleet.status.refused] == [("s01", "ClaimedByOther")]
    plan = fleet.step()
    assert "ClaimedByOther" not in [e.reason for e in plan.events]  # said once
    assert fleet.status.phase == "Succeeded" and fleet.status.total == 2
    assert "1 left alone" in (fleet.status.message or "")
    assert fleet.servers[("ns1", "s01")].image == "registry.test/vpes-tenant:3"
    assert fleet.servers[("ns1", "s01")].claimed_by == "other"  # its claim is not ours


def test_a_wave_that_fails_the_gate_is_rolled_back_and_the_upgrade_stops() -> None:
    fleet = Fleet.of(6, canary=2, maxUnavailable=2, healthTimeoutSeconds=300)
    fleet.set("s01", image="registry.test/vpes-tenant:0")  # its own image before
    fleet.step()
    assert fleet.wave() == ["s00", "s03"]  # the first two by namespace, then name
    fleet.health = lambda key: planner.Health(key[1] != "s03", "IMAP on h:143 did not answer")
    plan = fleet.step(seconds=299)
    assert plan.moves == [] and fleet.status.phase == "Canary"
    plan = fleet.step(seconds=2)
    assert fleet.status.phase == "RolledBack"
    assert sorted((m.name, m.image, m.claim) for m in plan.moves) == [
        ("s00", None, False),
        ("s03", None, False),
    ]
    assert fleet.on(NEW) == []
    message = fleet.status.message or ""
    assert "ns0/s03: IMAP on h:143 did not answer" in message
    assert "rolled back ns0/s00, ns0/s03" in message
    assert [(f.name, f.reason) for f in fleet.status.failures] == [("s03", "HealthGateFailed")]
    assert (fleet.status.failed, fleet.status.upgraded) == (1, 0)
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "RolledBack")]
    assert fleet.step().moves == []


def test_a_rollback_restores_each_server_s_own_previous_image() -> None:
    fleet = Fleet.of(3, canary=0, maxUnavailable=1, healthTimeoutSeconds=60)
    fleet.set("s00", image="registry.test/vpes-tenant:0")
    fleet.step()
    fleet.step()  # s00 passes; s03... wave 2 moves the next
    fleet.health = never
    second = fleet.wave()
    fleet.step(seconds=61)
    assert fleet.status.phase == "RolledBack"
    assert fleet.on(NEW) == ["s00"]  # the wave that passed stays upgraded
    assert all(fleet.servers[k].image is None for k in fleet.servers if k[1] in second)
    assert fleet.status.upgraded == 1 and fleet.status.failed == 1


def test_a_move_lost_in_a_crash_is_asked_for_again() -> None:
    fleet = Fleet.of(2, canary=1)
    plan = fleet.step()
    fleet.set("s00", image=None, claimed_by=None)  # the status was written, the move was not
    fleet.health = never
    again = fleet.step()
    assert again.moves == plan.moves
    assert fleet.step().moves == []  # once made, not again


def test_a_server_deleted_during_its_wave_is_dropped() -> None:
    fleet = Fleet.of(2, canary=1)
    fleet.step()
    del fleet.servers[("ns0", "s00")]
    fleet.step()
    assert fleet.status.current_wave == 2 and fleet.wave() == ["s01"]


def test_servers_already_on_the_image_count_as_upgraded() -> None:
    fleet = Fleet.of(2)
    fleet.spec = fleet.spec.model_copy(update={"image": OLD})
    plan = fleet.step()
    assert plan.moves == [] and fleet.status.phase == "Succeeded"
    assert fleet.status.upgraded == 2


def test_a_terminal_status_is_left_as_it_is() -> None:
    fleet = Fleet.of(1)
    fleet.status = FleetUpgradeStatus(phase="Failed", message="the API refused the selector")
    plan = fleet.step()
    assert plan.moves == [] and plan.status == fleet.status


def test_a_deleted_upgrade_sends_its_wave_back_and_gives_every_claim_back() -> None:
    fleet = Fleet.of(4, canary=1, maxUnavailable=2)
    fleet.step()
    fleet.step()  # the canary passed; the second wave is in flight
    assert fleet.wave() == ["s03", "s01"]  # in (namespace, name) order
    moves = planner.abandon("up", fleet.status, sorted(fleet.servers.values(), key=lambda s: s.key))
    got = {(m.name, m.image, m.claim) for m in moves}
    # the canary passed: it keeps the image; the wave in flight goes back; s02 never moved
    assert got == {("s00", NEW, False), ("s03", None, False), ("s01", None, False)}


def test_a_deleted_upgrade_that_ended_or_another_ones_servers_are_left_alone() -> None:
    fleet = Fleet.of(2, canary=1)
    fleet.set("s01", claimed_by="other")
    fleet.step()
    servers = sorted(fleet.servers.values(), key=lambda s: s.key)
    assert [m.name for m in planner.abandon("up", fleet.status, servers)] == ["s00"]
    fleet.step()
    fleet.step()
    assert fleet.status.phase == "Succeeded"
    assert planner.abandon("up", fleet.status, servers) == []
