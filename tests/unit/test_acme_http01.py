"""The pure parts of the HTTP-01 solver: tokens, where vpes-web is asked, what counts as
served, the answers of an order, and the wait for vpes-web (with a scripted fetch)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from acme import challenges, messages
from acme import errors as acme_errors
from vpes_operator.certs import account
from vpes_operator.certs.errors import (
    ACMEConfigError,
    ChallengeFailedError,
    from_exception,
    now_utc,
)
from vpes_operator.certs.http01 import (
    Challenge,
    Http01Answers,
    Http01Solver,
    answers_of,
    configmap_body,
    is_token,
    seen_wrong,
)
from vpes_operator.certs.solvers import Task
from vpes_operator.certs.web_pods import Targets, slice_urls, targets
from vpes_operator.clients.kube import ApiError
from vpes_operator.models.conditions import Reason
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

KEY = account.parse(account.new_key_pem(), "a test key")


@pytest.mark.parametrize(
    ("token", "ok"),
    [
        ("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", True),  # RFC 8555's example
        ("a_b-C9", True),
        ("x" * 256, True),
        ("x" * 257, False),
        ("", False),
        ("abc=", False),  # padding
        ("a.b", False),
        ("..", False),
        ("a/b", False),
        ("<script>", False),
        ("abc\n", False),
    ],
)
def test_only_base64url_tokens_are_tokens(token: str, ok: bool) -> None:
    assert is_token(token) is ok


class Slices:
    """The API server's EndpointSlices of one Service, and what was asked for them."""

    def __init__(self, slices: list[dict[str, Any]] | Exception) -> None:
        self.slices = slices
        self.asked: list[tuple[Any, ...]] = []

    def list(self, api_version: str, kind: str, namespace: str, *, labels: str) -> Any:
        self.asked.append((api_version, kind, namespace, labels))
        if isinstance(self.slices, Exception):
            raise self.slices
        return self.slices


def endpoint(address: str, ready: bool | None = True) -> dict[str, Any]:
    conditions = {} if ready is None else {"ready": ready}
    return {"addresses": [address], "conditions": conditions}


@pytest.mark.parametrize(
    ("slices", "urls"),
    [
        ([], []),
        (
            [{"ports": [{"name": "http", "port": 8080}], "endpoints": [endpoint("10.0.0.2")]}],
            ["http://10.0.0.2:8080"],
        ),
        (  # ready unset is ready; not ready is left out; each address once, sorted
            [
                {
                    "ports": [{"name": "metrics", "port": 9}, {"name": "http", "port": 8080}],
                    "endpoints": [
                        endpoint("10.0.0.3", None),
                        endpoint("10.0.0.4", False),
                        endpoint("10.0.0.2"),
                    ],
                },
                {"ports": [{"port": 8080}], "endpoints": [endpoint("10.0.0.2")]},
            ],
            ["http://10.0.0.2:8080", "http://10.0.0.3:8080"],
        ),
        (
            [{"ports": [{"name": "http", "port": 8080}], "endpoints": [endpoint("fd00::5")]}],
            ["http://[fd00::5]:8080"],
        ),
        (  # no port to ask at
            [{"ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}], "endpoints": []}],
            [],
        ),
    ],
)
def test_each_ready_pod_of_the_service_is_asked(
    slices: list[dict[str, Any]], urls: list[str]
) -> None:
    assert slice_urls(slices) == urls


def test_vpes_web_is_asked_at_its_pods_unless_a_url_is_set() -> None:
    settings = OperatorSettings(web_service_name="vpes-web", operator_namespace="mail-system")
    api = Slices([{"ports": [{"port": 8080}], "endpoints": [endpoint("10.0.0.2")]}])
    pods = targets(api, settings)  # type: ignore[arg-type]
    assert pods.find() == ["http://10.0.0.2:8080"]
    assert api.asked == [
        (
            "discovery.k8s.io/v1",
            "EndpointSlice",
            "mail-system",
            "kubernetes.io/service-name=vpes-web",
        )
    ]
    assert pods.label == "vpes-web (each ready pod of the Service mail-system/vpes-web)"
    given = settings.model_copy(update={"acme_http01_check_url": "http://127.0.0.1:9/"})
    one = targets(api, given)  # type: ignore[arg-type]
    assert (one.label, one.find()) == ("vpes-web at http://127.0.0.1:9", ["http://127.0.0.1:9"])


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (OperatorSettings(), "VPES_WEB_SERVICE_NAME is empty"),
        (OperatorSettings(acme_http01_check_url="vpes-web:80"), "is not an http:// URL"),
    ],
)
def test_no_way_to_reach_vpes_web_is_a_configuration_error(
    settings: OperatorSettings, words: str
) -> None:
    with pytest.raises(ACMEConfigError) as caught:
        targets(Slices([]), settings)  # type: ignore[arg-type]
    assert caught.value.reason == Reason.ACME_NOT_CONFIGURED
    assert words in caught.value.message


def test_the_solver_says_so_before_writing_anything() -> None:
    solver = Http01Solver(None, OperatorSettings())  # type: ignore[arg-type]  # never reached
    with pytest.raises(ACMEConfigError, match="VPES_WEB_SERVICE_NAME"):
        solver.present([task("a.example.org", b"t" * 32)], KEY.jwk)


@pytest.mark.parametrize(
    ("status", "body", "wrong"),
    [
        (200, "tok.thumb", None),
        (200, "tok.thumb\r\n", None),  # the CA ignores trailing whitespace
        (200, "tok.other", "a different key authorization"),
        (200, " tok.thumb", "a different key authorization"),
        (404, "not found", "HTTP 404"),
        (503, "not ready", "HTTP 503"),
        (301, "", "HTTP 301"),  # redirects are not followed
    ],
)
def test_what_counts_as_served(status: int, body: str, wrong: str | None) -> None:
    assert seen_wrong("tok.thumb", status, body) == wrong


def task(name: str, token: bytes, kind: Any = challenges.HTTP01) -> Task:
    challb = messages.ChallengeBody(chall=kind(token=token), uri=f"https://ca.example/c/{name}")
    return Task(name, challb)


def test_each_task_becomes_its_token_and_key_authorization() -> None:
    tasks = [task("a.example.org", b"\x01" * 32), task("b.example.org", b"\x02" * 32)]
    got = answers_of(tasks, KEY.jwk)
    assert len(got) == 2
    for t in tasks:
        chall = t.challb.chall
        token = chall.encode("token")
        assert is_token(token)
        assert got[token] == Challenge(t.name, chall.key_authorization(KEY.jwk))
        assert got[token].key_authorization.startswith(token + ".")


def test_the_solver_answers_only_http01_and_refuses_an_unservable_token() -> None:
    with pytest.raises(TypeError, match="http-01 cannot answer dns-01"):
        answers_of([task("a.example.org", b"t" * 32, challenges.DNS01)], KEY.jwk)
    with pytest.raises(ChallengeFailedError) as caught:
        answers_of([task("a.example.org", b"t" * 300)], KEY.jwk)
    assert caught.value.message.startswith("http-01 for a.example.org: the CA's token")
    assert "at most 256 characters" in caught.value.message


def test_the_configmap_is_labelled_as_the_operators() -> None:
    body = configmap_body("vpes-system", "vpes-acme-http01", {"tok": "tok.thumb"})
    assert body == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "vpes-acme-http01",
            "namespace": "vpes-system",
            "labels": {
                "app.kubernetes.io/managed-by": "vpes-operator",
                "vpes.io/component": "acme-http01",
            },
        },
        "data": {"tok": "tok.thumb"},
    }


class Web:
    """A scripted vpes-web: what it serves per token, and the requests it got."""

    def __init__(self) -> None:
        self.served: dict[str, str] = {}
        self.down = False
        self.asked: list[tuple[str, str]] = []

    def fetch(self, url: str, host: str) -> tuple[int, str]:
        self.asked.append((url, host))
        if self.down:
            raise requests.exceptions.ConnectionError("refused")
        token = url.rsplit("/", 1)[1]
        found = self.served.get(token)
        return (404, "not found") if found is None else (200, found)


def answers(web: Web, where: Targets | None = None) -> Http01Answers:
    expected = {"t1": Challenge("a.example.org", "t1.k"), "t2": Challenge("b.example.org", "t2.k")}
    return Http01Answers(
        None,  # type: ignore[arg-type]  # the wait never writes
        "vpes-system",
        "vpes-acme-http01",
        where or Targets("vpes-web at http://web:80", lambda: ["http://web:80"]),
        expected,
        web.fetch,
        0.01,
    )


def test_the_wait_asks_as_the_ca_does_and_returns_once_every_answer_is_served() -> None:
    web = Web()
    web.served = {"t1": "t1.k", "t2": "t2.k"}
    answers(web).wait_ready(1)
    assert sorted(web.asked) == [
        ("http://web:80/.well-known/acme-challenge/t1", "a.example.org"),
        ("http://web:80/.well-known/acme-challenge/t2", "b.example.org"),
    ]


def test_answers_not_served_in_time_fail_the_challenge_saying_what_vpes_web_gave() -> None:
    web = Web()
    web.served = {"t1": "t1.k", "t2": "t2.stale"}
    waiting = answers(web)
    assert waiting.missing() == {"b.example.org": "a different key authorization at http://web:80"}
    with pytest.raises(ChallengeFailedError) as caught:
        waiting.wait_ready(0.05)
    message = caught.value.message
    assert caught.value.reason == Reason.CHALLENGE_FAILED
    assert message.startswith(
        "http-01: vpes-web at http://web:80 still does not serve the answer for "
        "b.example.org (a different key authorization at http://web:80) 0.05 s after it was "
        "put in the ConfigMap vpes-system/vpes-acme-http01: check that vpes-web runs"
    )
    web.down = True
    assert waiting.missing() == {
        "a.example.org": "no answer: ConnectionError at http://web:80",
        "b.example.org": "no answer: ConnectionError at http://web:80",
    }


def test_every_pod_must_serve_every_answer() -> None:
    web = Web()
    web.served = {"t1": "t1.k", "t2": "t2.k"}
    lagging = Web()  # its watch of the ConfigMap is behind
    lagging.served = {"t1": "t1.k"}

    def fetch(url: str, host: str) -> tuple[int, str]:
        return (lagging if url.startswith("http://10.0.0.3") else web).fetch(url, host)

    pods = ["http://10.0.0.2:8080", "http://10.0.0.3:8080"]
    waiting = answers(web, Targets("vpes-web (each ready pod)", lambda: pods))
    waiting.fetch = fetch
    assert waiting.missing() == {"b.example.org": "HTTP 404 at http://10.0.0.3:8080"}
    lagging.served["t2"] = "t2.k"
    waiting.wait_ready(1)


def forbidden() -> list[str]:
    raise ApiError(403, '{"message": "forbidden"}', "GET", "/x")


@pytest.mark.parametrize(
    ("find", "why"),
    [(list, "no pod is ready"), (forbidden, "its pods cannot be listed: forbidden")],
)
def test_no_pod_to_ask_is_every_answer_missing(find: Any, why: str) -> None:
    waiting = answers(Web(), Targets("vpes-web (each ready pod)", find))
    assert waiting.missing() == {"a.example.org": why, "b.example.org": why}
    with pytest.raises(ChallengeFailedError, match="vpes-web \\(each ready pod\\) still"):
        waiting.wait_ready(0.02)


def test_a_failed_http01_validation_names_the_challenge_though_the_detail_holds_its_url() -> None:
    detail = 'Get "http://a.example.org:80/.well-known/acme-challenge/t": connection refused'
    problem = messages.Error(typ="urn:ietf:params:acme:error:connection", detail=detail)
    challb = messages.ChallengeBody(
        chall=challenges.HTTP01(token=b"t" * 32),
        uri="https://ca.example/chall/1",
        status=messages.STATUS_INVALID,
        error=problem,
    )
    body = messages.Authorization(
        identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="a.example.org"),
        challenges=[challb],
        status=messages.STATUS_INVALID,
    )
    failed = acme_errors.ValidationError(
        [messages.AuthorizationResource(body=body, uri="https://ca.example/authz/1")]
    )
    err = from_exception(failed, "https://ca.example/dir", now_utc())
    assert isinstance(err, ChallengeFailedError)
    assert err.message.startswith("http-01 for a.example.org: the CA https://ca.example/dir")
    assert detail in err.message


def test_the_configmap_and_check_url_come_from_the_environment() -> None:
    settings = OperatorSettings.from_env(
        {
            "VPES_ACME_HTTP01_CONFIGMAP": "mail-acme-http01",
            "VPES_ACME_HTTP01_CHECK_URL": "http://web.example:8080",
        }
    )
    assert settings.acme_http01_configmap == "mail-acme-http01"
    assert targets(Slices([]), settings).find() == ["http://web.example:8080"]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="acme_http01_configmap"):
        OperatorSettings.from_env({"VPES_ACME_HTTP01_CONFIGMAP": "Not A Name"})
