"""vpes-web's ACME HTTP-01 answers: at any host, from the last data of the one ConfigMap
its informer (field selector by name) delivered; 404 for an unknown or malformed token,
which is never echoed; 503 before the first list."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from vpes_operator.clients.kube import JSON
from vpes_operator.settings import OperatorSettings
from vpes_panel.wellknown.acme import AcmeAnswers, data_of, watch_answers
from vpes_panel.wellknown.app import build_app
from vpes_panel.wellknown.settings import WebSettings

from .hosted_support import indexed

pytestmark = pytest.mark.unit

NAME = "vpes-acme-http01"
TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
ANSWER = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
PATH = "/.well-known/acme-challenge/"


def configmap(data: dict[str, str] | None, name: str = NAME) -> JSON:
    obj: JSON = {"metadata": {"name": name, "namespace": "vpes-system"}}
    if data is not None:
        obj["data"] = data
    return obj


def test_the_data_is_the_named_configmaps_only() -> None:
    assert data_of([configmap({"a": "1"}, "other"), configmap({"b": "2"})], NAME) == {"b": "2"}
    assert data_of([configmap(None)], NAME) == {}
    assert data_of([], NAME) == {}


def test_lists_and_events_replace_the_answers() -> None:
    answers = AcmeAnswers(NAME)
    assert not answers.synced.is_set()
    answers.replace([])
    assert answers.synced.is_set() and answers.get(TOKEN) is None
    answers.event("ADDED", configmap({TOKEN: ANSWER}))
    assert answers.get(TOKEN) == ANSWER
    answers.event("MODIFIED", configmap({}))
    assert answers.get(TOKEN) is None
    answers.replace([configmap({TOKEN: ANSWER})])
    assert answers.get(TOKEN) == ANSWER
    answers.event("DELETED", configmap({TOKEN: ANSWER}))
    assert answers.get(TOKEN) is None


def client(answers: AcmeAnswers | None) -> TestClient:
    mail = OperatorSettings(edge_web_host="web.edge.example")
    servers = [{"metadata": {"name": "a", "namespace": "a"}, "spec": {"domains": ["a.example"]}}]
    return TestClient(build_app(WebSettings(mail=mail), indexed(servers), acme=answers))


@pytest.mark.parametrize(
    "host", ["a.example", "nobody-hosts-this.example", "web.edge.example", "mx.edge.example:80"]
)
def test_a_published_answer_is_served_as_text_at_any_host(host: str) -> None:
    answers = AcmeAnswers(NAME)
    answers.replace([configmap({TOKEN: ANSWER})])
    r = client(answers).get(PATH + TOKEN, headers={"host": host})
    assert r.status_code == 200
    assert r.text == ANSWER
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert client(answers).head(PATH + TOKEN, headers={"host": host}).status_code == 200


@pytest.mark.parametrize(
    "token",
    ["unknownTokenxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "<script>alert(1)</script>", "a.b", "x" * 300],
)
def test_an_unknown_or_malformed_token_is_404_and_not_echoed(token: str) -> None:
    answers = AcmeAnswers(NAME)
    answers.replace([configmap({TOKEN: ANSWER, "a.b": "served?"})])
    r = client(answers).get(PATH + token, headers={"host": "a.example"})
    assert r.status_code == 404
    assert r.text == "not found"


def test_before_the_first_list_the_answer_is_unavailable_not_missing() -> None:
    r = client(AcmeAnswers(NAME)).get(PATH + TOKEN, headers={"host": "a.example"})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"


def test_without_answers_the_path_is_an_ordinary_404() -> None:
    r = client(None).get(PATH + TOKEN, headers={"host": "a.example"})
    assert r.status_code == 404


class OneConfigMap:
    """An API server holding the ConfigMap, recording what each list and watch asked."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.lists: list[tuple[str, dict[str, str] | None]] = []
        self.watches: list[tuple[str, str]] = []

    def request(self, method: str, path: str, *, query: dict[str, str] | None = None) -> JSON:
        self.lists.append((path, query))
        return {"items": [configmap({TOKEN: "old"})], "metadata": {"resourceVersion": "7"}}

    def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int = 300, fields: str = ""
    ) -> Iterator[tuple[str, Any]]:
        self.watches.append((path, fields))
        yield "MODIFIED", configmap({TOKEN: ANSWER}) | {"metadata": {"name": NAME}}
        self.stop.wait(5)


def test_the_informer_lists_and_watches_the_one_configmap_by_name() -> None:
    stop = threading.Event()
    api = OneConfigMap(stop)
    answers = watch_answers(api, "vpes-system", NAME, stop)  # type: ignore[arg-type]
    try:
        assert answers.synced.wait(5)
        deadline = threading.Event()
        for _ in range(100):
            if answers.get(TOKEN) == ANSWER:
                break
            deadline.wait(0.05)
        assert answers.get(TOKEN) == ANSWER
    finally:
        stop.set()
    selector = {"fieldSelector": f"metadata.name={NAME}"}
    assert api.lists == [("/api/v1/namespaces/vpes-system/configmaps", selector)]
    assert api.watches == [("/api/v1/namespaces/vpes-system/configmaps", f"metadata.name={NAME}")]
