"""HTTP-01: the answers to the CA served by vpes-web, published through one ConfigMap.

`Http01Solver.present` puts each challenge's key authorization into the ConfigMap
`settings.acme_http01_configmap` of the operator's namespace (key: the token,
value: the key authorization; public by design, RFC 8555 section 8.3, so no
Secret). vpes-web watches that one ConfigMap and answers
`GET /.well-known/acme-challenge/<token>` at any host with it
(`vpes_panel.wellknown.acme`). Writes are JSON merge patches that name only the
order's own tokens, so concurrent orders (two operator replicas, or one order per
server) never remove each other's answers; the ConfigMap is created by the first
order that finds none.

`wait_ready` asks vpes-web itself, as the CA will (a GET of the answer's path with
the name as Host), at each ready pod of its Service or at
`settings.acme_http01_check_url` (`web_pods.py`), until every answer is served
everywhere; `cleanup` removes the order's tokens only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import requests
from acme import challenges
from josepy.jwk import JWK

from .. import naming
from ..clients.kube import ApiError, Kube
from ..settings import OperatorSettings
from .errors import ChallengeFailedError
from .solvers import Task
from .web_pods import Targets, targets

HTTP01 = "http-01"
PATH = "/.well-known/acme-challenge/"
# A token is base64url without padding (RFC 8555 section 8.3); CAs' are 43 characters.
MAX_TOKEN = 256
TOKEN = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_TOKEN}}}")
COMPONENT = "acme-http01"
# One check of one answer: vpes-web answers from memory, so this is generous.
CHECK_TIMEOUT = 5.0

# (URL, Host header) -> (HTTP status, body); raises requests' exceptions.
Fetch = Callable[[str, str], tuple[int, str]]


def is_token(token: str) -> bool:
    """Whether `token` is a base64url token (and so a ConfigMap key and a path segment)."""
    return TOKEN.fullmatch(token) is not None


def seen_wrong(expected: str, status: int, body: str) -> str | None:
    """What is wrong with one answer vpes-web gave (None: it is the right one). The CA
    ignores whitespace at the end of the body (RFC 8555 section 8.3)."""
    if status != 200:
        return f"HTTP {status}"
    if body.rstrip() != expected:
        return "a different key authorization"
    return None


def http_fetch(url: str, host: str) -> tuple[int, str]:
    """One GET of `url` with the Host header `host`, no redirects followed."""
    response = requests.get(
        url, headers={"Host": host}, timeout=CHECK_TIMEOUT, allow_redirects=False
    )
    return response.status_code, response.text


def configmap_body(namespace: str, name: str, data: Mapping[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": naming.MANAGED_BY,
                naming.LABEL_COMPONENT: COMPONENT,
            },
        },
        "data": dict(data),
    }


@dataclass(frozen=True)
class Challenge:
    """One answer: the name it proves, and the key authorization served for its token."""

    name: str
    key_authorization: str


@dataclass
class Http01Answers:
    """The tokens one order put into the ConfigMap, and how to check they are served."""

    kube: Kube
    namespace: str
    configmap: str
    targets: Targets
    expected: dict[str, Challenge]  # token -> its answer
    fetch: Fetch = http_fetch
    poll_interval: float = 0.5

    @property
    def where(self) -> str:
        return f"the ConfigMap {self.namespace}/{self.configmap}"

    def probe(self, base: str, token: str) -> str | None:
        """What vpes-web at `base` serves wrongly for `token` (None: the right answer)."""
        challenge = self.expected[token]
        try:
            status, body = self.fetch(base + PATH + token, challenge.name)
        except requests.exceptions.RequestException as e:
            return f"no answer: {type(e).__name__}"
        return seen_wrong(challenge.key_authorization, status, body)

    def missing(self) -> dict[str, str]:
        """The names whose answer vpes-web does not serve yet (at one of the places
        asked), with what it gave where."""
        try:
            bases = self.targets.find()
        except ApiError as e:
            return self._all(f"its pods cannot be listed: {e.message}")
        if not bases:
            return self._all("no pod is ready")
        out: dict[str, str] = {}
        for token in sorted(self.expected):
            for base in bases:
                wrong = self.probe(base, token)
                if wrong is not None:
                    out[self.expected[token].name] = f"{wrong} at {base}"
                    break
        return out

    def _all(self, why: str) -> dict[str, str]:
        return {c.name: why for c in self.expected.values()}

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while missing := self.missing():
            if time.monotonic() >= deadline:
                seen = ", ".join(f"{name} ({wrong})" for name, wrong in sorted(missing.items()))
                raise ChallengeFailedError(
                    f"http-01: {self.targets.label} still does not serve the answer for {seen} "
                    f"{timeout:g} s after it was put in {self.where}: check that vpes-web runs, "
                    "that the operator reaches it and that vpes-web may watch that ConfigMap"
                )
            time.sleep(self.poll_interval)

    def cleanup(self) -> list[str]:
        if not self.expected:
            return []
        patch = {"data": dict.fromkeys(self.expected)}  # null: remove the key
        try:
            self.kube.merge_patch("v1", "ConfigMap", self.namespace, self.configmap, patch)
        except ApiError as e:
            if e.status == 404:  # gone, and the tokens with it
                self.expected = {}
                return []
            return [f"http-01: the tokens could not be removed from {self.where}: {e.message}"]
        self.expected = {}
        return []


def publish(kube: Kube, namespace: str, name: str, data: Mapping[str, str]) -> None:
    """Add `data`'s keys to the ConfigMap (made when there is none), leaving the rest."""
    patch = {"data": dict(data)}
    try:
        kube.merge_patch("v1", "ConfigMap", namespace, name, patch)
        return
    except ApiError as e:
        if e.status != 404:
            raise
    try:
        kube.create(configmap_body(namespace, name, data))
    except ApiError as e:
        if e.status != 409:  # 409: another order made it meanwhile; add ours to theirs
            raise
        kube.merge_patch("v1", "ConfigMap", namespace, name, patch)


def answers_of(tasks: Sequence[Task], key: JWK) -> dict[str, Challenge]:
    """token -> answer for each HTTP-01 task; ChallengeFailedError for a token that is
    not base64url (it would be neither a ConfigMap key nor a path segment) or too long."""
    out: dict[str, Challenge] = {}
    for task in tasks:
        chall = task.challb.chall
        if not isinstance(chall, challenges.HTTP01):
            raise TypeError(f"{HTTP01} cannot answer {chall.typ}")
        token = chall.encode("token")
        if not is_token(token):
            raise ChallengeFailedError(
                f"http-01 for {task.name}: the CA's token is not base64url of at most "
                f"{MAX_TOKEN} characters, so vpes-web cannot serve it (RFC 8555 section 8.3)"
            )
        out[token] = Challenge(task.name, chall.validation(key))
    return out


class Http01Solver:
    """HTTP-01 through vpes-web (see the module's text). Keeps no state of its own: each
    order's tokens are in the `Http01Answers` that `present` returns."""

    challenge_type: str = HTTP01

    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        *,
        fetch: Fetch = http_fetch,
        poll_interval: float = 0.5,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.namespace = settings.operator_namespace
        self.configmap = settings.acme_http01_configmap
        self.fetch = fetch
        self.poll_interval = poll_interval

    def present(self, tasks: Sequence[Task], key: JWK) -> Http01Answers:
        where = targets(self.kube, self.settings)  # ACMEConfigError before any write
        expected = answers_of(tasks, key)
        data = {token: c.key_authorization for token, c in expected.items()}
        try:
            publish(self.kube, self.namespace, self.configmap, data)
        except ApiError as e:  # a merge patch is all or nothing: nothing is left behind
            names = ", ".join(sorted({c.name for c in expected.values()}))
            raise ChallengeFailedError(
                f"http-01: the answers for {names} could not be put in the ConfigMap "
                f"{self.namespace}/{self.configmap}: {e.message}"
            ) from None
        return Http01Answers(
            self.kube,
            self.namespace,
            self.configmap,
            where,
            expected,
            self.fetch,
            self.poll_interval,
        )
