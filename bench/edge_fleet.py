"""Synthetic fleets for the edge benchmark, and the maps the operator builds for them.

Every synthetic server has one domain, three mailboxes and two aliases (so six
recipients with the domain's postmaster); the real tenant the throughput runs
deliver into is the image tests' sample server (``sample_spec``), routed to the
tenant container's own address instead of a Service name (as the image tests
route it).
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
import time
from collections.abc import Callable

from vpes_operator.edge import EdgeMapsError, build, routing
from vpes_operator.edge import maps as edge_maps
from vpes_operator.models.server import PersonalMailServer, PersonalMailServerSpec
from vpes_operator.settings import OperatorSettings

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
SETTINGS = OperatorSettings()
# The real tenant's key in the maps (what its transport line is rewritten for).
REAL_NAMESPACE, REAL_NAME = "customer", "tenant"


def pms(namespace: str, name: str, spec: dict[str, object], index: int) -> PersonalMailServer:
    created = T0 + dt.timedelta(seconds=index)
    return PersonalMailServer.model_validate(
        {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": f"uid-{namespace}-{name}",
                "generation": 1,
                "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "spec": spec,
        }
    )


def synthetic(index: int, domain: str | None = None) -> PersonalMailServer:
    """Server ``index``: one domain, alice (aliases info and sales), bob, carol."""
    d = domain or f"t{index:05d}.example"
    spec: dict[str, object] = {
        "plan": "personal",
        "owner": {"email": f"owner{index}@owner.example"},
        "domains": [d],
        "mailboxes": [
            {"address": f"alice@{d}", "aliases": ["info", "sales"]},
            {"address": f"bob@{d}"},
            {"address": f"carol@{d}"},
        ],
    }
    return pms(f"t-{index:05d}", "mail", spec, index)


def fleet(count: int) -> list[PersonalMailServer]:
    return [synthetic(i) for i in range(count)]


def real(spec: PersonalMailServerSpec) -> PersonalMailServer:
    """The tenant container's server, created before every synthetic one."""
    return pms(REAL_NAMESPACE, REAL_NAME, spec.wire(), -1)


def maps(servers: list[PersonalMailServer], tenant_ip: str = "") -> dict[str, str]:
    """The ConfigMap's files for ``servers``; with ``tenant_ip``, the real tenant's
    domains go to that address (the Service name does not resolve under podman)."""
    files = dict(build(servers, {}, SETTINGS).maps.files)
    if tenant_ip:
        host = f"{REAL_NAME}.{REAL_NAMESPACE}.svc.{SETTINGS.cluster_domain}"
        files["transport"] = files["transport"].replace(f"[{host}]", f"[{tenant_ip}]")
        assert f"[{tenant_ip}]" in files["transport"], "the real tenant is not in the maps"
        del files["version"]
        files["version"] = edge_maps.version(files) + "\n"
    return files


def new_domain_maps(count: int, round_: int) -> tuple[dict[str, str], str]:
    """``count`` servers plus one more with a domain never seen before: the maps and
    an address of the new domain that they accept."""
    domain = f"new-{round_}-{time.monotonic_ns()}.example"
    return maps([*fleet(count), synthetic(count, domain)]), f"alice@{domain}"


def cpu(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def build_cpu(count: int, reps: int) -> dict[str, object]:
    """CPU seconds of ``build`` for ``count`` servers (median of ``reps``), next to the
    floor: each server's own addresses resolved once, which any builder must do."""
    servers = fleet(count)
    refused = ""

    def whole() -> None:
        nonlocal refused
        try:
            build(servers, {}, SETTINGS)
        except EdgeMapsError as e:  # too large for a ConfigMap: raised after the work
            refused = str(e)

    def floor() -> None:
        for s in servers:
            edge_maps.accepted(s, routing.listed_domains(s))

    built = statistics.median(cpu(whole) for _ in range(reps))
    base = statistics.median(cpu(floor) for _ in range(reps))
    if refused:
        size = int(re.search(r"take (\d+) bytes", refused).group(1))  # type: ignore[union-attr]
    else:
        size = sum(len(t.encode()) for t in build(servers, {}, SETTINGS).maps.files.values())
    return {
        "servers": count,
        "reps": reps,
        "build_cpu_s": built,
        "floor_cpu_s": base,
        "bytes": size,
        "refused": refused,
    }
