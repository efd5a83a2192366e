"""Where the operator asks vpes-web for the HTTP-01 answers: every ready pod of its Service.

A CA validates from several places, each reaching whichever vpes-web replica the
Ingress picks; an answer one replica serves and another does not yet (its watch of the
ConfigMap broken and backing off) fails the challenge. So the operator asks each ready
pod behind vpes-web's Service (its EndpointSlices: the Service's own view of its pods),
not the Service, and tells the CA only once all of them serve. With
VPES_ACME_HTTP01_CHECK_URL set, it asks that one URL instead.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from ..clients.kube import JSON, Kube
from ..settings import OperatorSettings
from .errors import ACMEConfigError

SERVICE_LABEL = "kubernetes.io/service-name"
PORT_NAME = "http"  # the chart's vpes-web Service port


@dataclass(frozen=True)
class Targets:
    """`find` gives the base URLs to ask now (no trailing slash); `label` says in a
    message what they are."""

    label: str
    find: Callable[[], list[str]]


def _url(address: str, port: int) -> str:
    try:
        if ipaddress.ip_address(address).version == 6:
            return f"http://[{address}]:{port}"
    except ValueError:
        pass
    return f"http://{address}:{port}"


def _port(ports: list[JSON]) -> int | None:
    """The slice's port: its only one, else the one named `PORT_NAME`."""
    if len(ports) == 1:
        return ports[0].get("port")
    return next((p.get("port") for p in ports if p.get("name") == PORT_NAME), None)


def slice_urls(slices: list[JSON]) -> list[str]:
    """The base URL of each ready endpoint of these EndpointSlices (a `ready` left unset
    means ready, as the API says), each once, sorted."""
    urls: set[str] = set()
    for s in slices:
        port = _port(s.get("ports") or [])
        if port is None:
            continue
        for endpoint in s.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            urls.update(_url(a, port) for a in (endpoint.get("addresses") or [])[:1])
    return sorted(urls)


def targets(kube: Kube, settings: OperatorSettings) -> Targets:
    """Where to ask (see the module's text); ACMEConfigError when nowhere can be."""
    given = settings.acme_http01_check_url
    if given:
        if not given.startswith(("http://", "https://")):
            raise ACMEConfigError(
                f"VPES_ACME_HTTP01_CHECK_URL {given!r} is not an http:// URL: set it to where "
                "the operator reaches vpes-web, or unset it to ask vpes-web's pods"
            )
        base = given.rstrip("/")
        return Targets(f"vpes-web at {base}", lambda: [base])
    service = settings.web_service_name
    if not service:
        raise ACMEConfigError(
            "http-01 needs vpes-web, which serves the answers, but VPES_WEB_SERVICE_NAME is "
            "empty: install vpes-web (web.enabled) or set VPES_ACME_HTTP01_CHECK_URL"
        )
    namespace = settings.operator_namespace

    def find() -> list[str]:
        found = kube.list(
            "discovery.k8s.io/v1", "EndpointSlice", namespace, labels=f"{SERVICE_LABEL}={service}"
        )
        return slice_urls(found)

    return Targets(f"vpes-web (each ready pod of the Service {namespace}/{service})", find)
