"""The outbound relay's part of the edge: the maps' senders, limits and held lines, the
shard Secrets (which server where, users, DKIM lines and keys, determinism, size),
the SSHA512 hash as Dovecot defines it, and what the published shards give back."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import random
import time
from typing import Any

import pytest
from vpes_operator import crypto
from vpes_operator.credentials import Material
from vpes_operator.edge import build, relay
from vpes_operator.edge.relay import RelayEntry
from vpes_operator.models.server import PersonalMailServer
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
SETTINGS = OperatorSettings(relay_key_shards=4, relay_secret_prefix="mail-edge-relay")
PLANS: dict[str, dict[str, Any]] = {
    "small": {"outboundPerHour": 50},
    "none": {"outboundPerHour": 0},
}


def server(
    namespace: str,
    name: str,
    domains: list[str],
    *,
    minutes: int = 0,
    plan: str = "small",
    outbound: dict[str, Any] | None = None,
) -> PersonalMailServer:
    body: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "creationTimestamp": (T0 + dt.timedelta(minutes=minutes)).isoformat(),
        },
        "spec": {"plan": plan, "owner": {"email": "o@owner.example"}, "domains": domains},
    }
    if outbound is not None:
        body["status"] = {"outbound": outbound}
    return PersonalMailServer.model_validate(body)


def lines(*rows: str) -> str:
    return "".join(f"{r}\n" for r in rows)


@functools.cache
def rsa_pem() -> str:
    return crypto.generate_dkim_key(2048)


@functools.cache
def ed_pem() -> str:
    return crypto.generate_dkim_ed25519_key()


def test_senders_limits_and_held() -> None:
    fleet = [
        server("a", "one", ["one.example", "shared.example"]),
        server("b", "two", ["shared.example", "two.example"], minutes=1, plan="none"),
        server(
            "c",
            "three",
            ["three.example"],
            minutes=2,
            plan="missing",
            outbound={
                "held": True,
                "reason": "c/three reached its limit of 200\trecipients",
                "releasedToken": "1700000000",
            },
        ),
    ]
    files = build(fleet, PLANS, SETTINGS).maps.files
    # shared.example is one's (created first): two may not send as it.
    assert files["senders"] == lines(
        "@one.example a/one",
        "@shared.example a/one",
        "@three.example c/three",
        "@two.example b/two",
    )
    # Every live server, its plan's limit (a missing plan: the default, 200) and token.
    assert files["limits"] == lines("a/one 50 -", "b/two 0 -", "c/three 200 1700000000")
    assert files["held"] == lines("c/three c/three reached its limit of 200 recipients")


def test_a_release_token_changes_the_limits_and_the_version() -> None:
    before = build([server("a", "one", ["one.example"])], PLANS, SETTINGS).maps
    released = server("a", "one", ["one.example"], outbound={"releasedToken": "17 00"})
    after = build([released], PLANS, SETTINGS).maps
    assert after.files["limits"] == "a/one 50 1700\n"  # one word: the relay splits on spaces
    assert after.version != before.version


def test_shard_index_is_the_contracts() -> None:
    for key in ("a/one", "shop/alice", "x" * 60 + "/y"):
        assert relay.shard_of(key, 16) == int(hashlib.sha256(key.encode()).hexdigest(), 16) % 16


def entries_for(fleet: list[PersonalMailServer], ed25519: bool = False) -> dict[str, RelayEntry]:
    out = {}
    for s in fleet:
        m = Material(relay_password_hash=crypto.ssha512("pw-" + s.metadata.name))
        for d in s.spec["domains"]:
            m.dkim_keys[d] = rsa_pem()
            if ed25519:
                m.dkim_ed25519_keys[d] = ed_pem()
        out[f"{s.metadata.namespace}/{s.metadata.name}"] = relay.entry(m)
    return out


def test_shards_hold_users_dkim_lines_and_keys() -> None:
    fleet = [
        server("a", "one", ["one.example", "shared.example"]),
        server("b", "two", ["shared.example", "two.example"], minutes=1),
    ]
    edge = build(fleet, PLANS, SETTINGS)
    entries = entries_for(fleet, ed25519=True)
    data = relay.shards(edge.fleet, entries, edge.routing, "vpes", 4)
    assert len(data) == 4
    for i, shard in enumerate(data):
        assert f"users-{i}" in shard and f"dkim-{i}" in shard  # every shard, empty or not
    one, two = relay.shard_of("a/one", 4), relay.shard_of("b/two", 4)
    assert f"a/one:{entries['a/one'].password_hash}\n" in data[one][f"users-{one}"]
    assert f"b/two:{entries['b/two'].password_hash}\n" in data[two][f"users-{two}"]
    dkim_one = data[one][f"dkim-{one}"]
    assert "one.example vpes vpes.one.example.key\n" in dkim_one
    assert "one.example vpes-ed25519 vpes-ed25519.one.example.key\n" in dkim_one
    assert data[one]["vpes.one.example.key"] == rsa_pem()
    assert data[one]["vpes-ed25519.one.example.key"] == ed_pem()
    # shared.example is one's: two's key for it is never listed, nor stored.
    dkim_two = data[two][f"dkim-{two}"]
    assert "shared.example" not in dkim_two and "two.example vpes " in dkim_two
    everything = "".join(v for d in data for k, v in d.items() if k.startswith("dkim-"))
    assert everything.count("shared.example vpes ") == 1


def test_a_server_without_entry_or_not_live_is_left_out() -> None:
    fleet = [server("a", "one", ["one.example"]), server("b", "two", ["two.example"])]
    edge = build(fleet, PLANS, SETTINGS)
    entries = entries_for(fleet)
    del entries["b/two"]
    entries["gone/away"] = entries["a/one"]
    data = relay.shards(edge.fleet, entries, edge.routing, "vpes", 2)
    users = "".join(d[f"users-{i}"] for i, d in enumerate(data))
    assert users.splitlines() == [f"a/one:{entries['a/one'].password_hash}"]


def test_shards_are_deterministic_in_any_order() -> None:
    fleet = [server("ns", f"s{i}", [f"d{i}.example"], minutes=i) for i in range(20)]
    entries = entries_for(fleet)
    edge = build(fleet, PLANS, SETTINGS)
    first = relay.shards(edge.fleet, entries, edge.routing, "vpes", 4)
    for seed in range(3):
        shuffled = list(fleet)
        random.Random(seed).shuffle(shuffled)
        again = build(shuffled, PLANS, SETTINGS)
        shuffled_entries = dict(reversed(list(entries.items())))
        assert relay.shards(again.fleet, shuffled_entries, again.routing, "vpes", 4) == first


def test_the_secret_is_named_labelled_and_base64() -> None:
    body = relay.shard_secret(SETTINGS, 3, {"users-3": "a/b:{SSHA512}x\n", "dkim-3": ""})
    assert body["metadata"]["name"] == "mail-edge-relay-3"
    assert body["metadata"]["namespace"] == SETTINGS.operator_namespace
    assert body["metadata"]["labels"]["vpes.io/component"] == "edge-relay"
    assert base64.b64decode(body["data"]["users-3"]) == b"a/b:{SSHA512}x\n"
    assert relay.decoded(body) == {"users-3": "a/b:{SSHA512}x\n", "dkim-3": ""}


def test_ssha512_is_dovecots() -> None:
    # Dovecot: base64(SHA512(password || salt) || salt); the salt is what follows 64 bytes.
    salt = bytes(range(16))
    hashed = crypto.ssha512("secret", salt)
    raw = base64.b64decode(hashed.removeprefix("{SSHA512}"))
    assert hashed.startswith("{SSHA512}")
    assert raw == hashlib.sha512(b"secret" + salt).digest() + salt
    assert crypto.verify_ssha512("secret", hashed)
    assert not crypto.verify_ssha512("Secret", hashed)
    assert not crypto.verify_ssha512("secret", "{SSHA512}not base64!")
    assert crypto.ssha512("secret") != crypto.ssha512("secret")  # a new salt each time


def test_the_published_shards_give_the_entries_back() -> None:
    fleet = [
        server("a", "one", ["one.example", "shared.example"]),
        server("b", "two", ["shared.example", "two.example"], minutes=1),
    ]
    edge = build(fleet, PLANS, SETTINGS)
    entries = entries_for(fleet, ed25519=True)
    data = relay.shards(edge.fleet, entries, edge.routing, "vpes", 4)
    back = relay.entries_from_shards(data, edge.maps.files["senders"])
    assert back["a/one"] == entries["a/one"]
    # Two's key for the domain it lost was never published: it is not given back.
    assert back["b/two"].password_hash == entries["b/two"].password_hash
    assert [d for d, _ in back["b/two"].rsa] == ["two.example"]
    assert relay.shards(edge.fleet, back, edge.routing, "vpes", 4) == data


def test_an_oversized_shard_is_found() -> None:
    small = [{"users-0": "x" * 1000}]
    assert relay.oversized(small) == []
    big = [{"users-0": ""}, {"users-1": "x" * 760_000}]
    assert relay.oversized(big) == [(1, 7 + 4 * ((760_000 + 2) // 3))]


def big_fleet(n: int) -> tuple[list[PersonalMailServer], dict[str, RelayEntry]]:
    fleet = [server(f"ns{i % 50}", f"s{i}", [f"d{i}.example"], minutes=i) for i in range(n)]
    hashed = crypto.ssha512("x" * 32)
    entries = {
        f"ns{i % 50}/s{i}": RelayEntry(hashed, ((f"d{i}.example", rsa_pem()),)) for i in range(n)
    }
    return fleet, entries


@pytest.mark.parametrize("n", [1000])
def test_maps_and_shards_at_scale(n: int, capsys: pytest.CaptureFixture[str]) -> None:
    fleet, entries = big_fleet(n)
    started = time.process_time()
    edge = build(fleet, PLANS, SETTINGS)
    data = relay.shards(edge.fleet, entries, edge.routing, "vpes", 16)
    cpu = time.process_time() - started
    size = sum(relay.encoded_size(d) for d in data)
    with capsys.disabled():
        print(f"\n{n} servers: maps+shards {cpu:.2f}s CPU, {size / n:.0f} B/server in the shards")
    assert len(edge.maps.files["limits"].splitlines()) == n
    assert sum(d[f"users-{i}"].count("\n") for i, d in enumerate(data)) == n
    assert relay.oversized(data) == []
    assert cpu < 10.0


class FakeKube:
    """What the publisher asks of the API: GET, apply, and the metadata list."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.gets: list[str] = []
        self.applied: list[str] = []
        self.version = 0

    def get(self, _api: str, kind: str, _ns: str, name: str) -> dict[str, Any] | None:
        self.gets.append(name)
        return self.objects.get((kind, name))

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}
        self.objects[(body["kind"], body["metadata"]["name"])] = stored
        self.applied.append(body["metadata"]["name"])
        return stored

    def update_status(self, *_: Any) -> None:
        return None  # DomainsRouted: not what these tests look at

    def request(self, _method: str, path: str, **_: Any) -> dict[str, Any]:
        assert path.endswith("/secrets")
        items = [{"metadata": o["metadata"]} for (k, _), o in self.objects.items() if k == "Secret"]
        return {"items": items, "metadata": {}}


def publisher(kube: FakeKube, store: Any) -> Any:
    from vpes_operator.edgemaps import Publisher

    return Publisher(kube, SETTINGS, lambda *_: None, relay=store)  # type: ignore[arg-type]


def test_the_publisher_writes_shards_once_and_a_restart_keeps_them() -> None:
    from vpes_operator.watched import Watched

    fleet = [server("a", "one", ["one.example"]), server("b", "two", ["two.example"], minutes=1)]
    store: Watched[RelayEntry] = Watched()
    for who, found in entries_for(fleet).items():
        store.put(who, who, found)
    kube = FakeKube()
    first = publisher(kube, store)
    assert first.publish(fleet, PLANS)
    names = [f"mail-edge-relay-{i}" for i in range(4)]
    assert sorted(kube.applied) == sorted([*names, SETTINGS.edge_maps_name])
    published = {n: kube.objects[("Secret", n)]["data"] for n in names}
    # Nothing changed: one metadata list, no Secret read again, nothing written.
    kube.gets.clear()
    kube.applied.clear()
    assert first.publish(fleet, PLANS)
    assert kube.applied == [] and not set(kube.gets) & set(names)
    # A restarted operator with an empty store publishes the same shards (seeded from them).
    again = publisher(kube, Watched())
    assert again.publish(fleet, PLANS)
    assert kube.applied == []
    assert {n: kube.objects[("Secret", n)]["data"] for n in names} == published
    # A server deleted while the operator was down: its user goes.
    assert again.publish(fleet[:1], PLANS)
    all_users = "".join(
        v for n in names for k, v in relay.decoded(kube.objects[("Secret", n)]).items()
        if k.startswith("users-")
    )  # fmt: skip
    assert "b/two" not in all_users and "a/one" in all_users


def test_oversized_shards_leave_everything_as_it_was() -> None:
    from vpes_operator.watched import Watched

    fleet = [server("a", "one", ["one.example"])]
    store: Watched[RelayEntry] = Watched()
    store.put("a/one", "a/one", RelayEntry("{SSHA512}" + "x" * 800_000))
    kube = FakeKube()
    assert not publisher(kube, store).publish(fleet, PLANS)
    assert kube.applied == []


def test_a_key_leaves_its_shard_before_it_enters_another() -> None:
    from vpes_operator.watched import Watched

    # Two servers in different shards; the domain moves from the first to the second.
    names = [f"n{i}" for i in range(40)]
    a = next(n for n in names if relay.shard_of(f"a/{n}", 4) == 3)
    b = next(n for n in names if relay.shard_of(f"b/{n}", 4) == 0)
    first = server("a", a, ["moving.example"])
    second = server("b", b, ["moving.example", "b.example"], minutes=1)
    store: Watched[RelayEntry] = Watched()
    for who, found in entries_for([first, second]).items():
        store.put(who, who, found)
    kube = FakeKube()
    pub = publisher(kube, store)
    assert pub.publish([first, second], PLANS)
    kube.applied.clear()
    assert pub.publish([second], PLANS)  # the first server is gone: b has the domain
    shards = [n for n in kube.applied if n.startswith("mail-edge-relay-")]
    assert shards == ["mail-edge-relay-3", "mail-edge-relay-0"]
