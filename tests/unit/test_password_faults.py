"""A generated password is never lost, whichever write of a reconcile fails.

The credentials Secret holds the hash; the initial-passwords Secret shows the
password once. A reconcile cut short at any object, then run again, must end
with the shown password matching the stored hash.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import bcrypt
import pytest
from vpes_operator import naming, reconcile
from vpes_operator.clients.kube import ApiError, Kube
from vpes_operator.models.server import PersonalMailServer
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

NS, NAME = "c1", "s"
PLAN = {
    "resources": {"requests": {"cpu": "10m", "memory": "24Mi"}, "limits": {"memory": "96Mi"}},
    "storage": "1Gi",
    "maxDomains": 3,
    "maxMailboxes": 5,
}
BODY = PersonalMailServer.model_validate(
    {
        "metadata": {"name": NAME, "namespace": NS, "uid": "u-1", "generation": 1},
        "spec": {
            "plan": "p",
            "owner": {"email": "o@example.net"},
            "domains": ["example.org"],
            "mailboxes": [{"address": "alice@example.org"}],
        },
    }
)


class FailingKube:
    """Objects in a dict; the `fail_at`-th apply (0-based) raises, once."""

    def __init__(self, fail_at: int | None) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.applies = 0
        self.fail_at = fail_at

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        return copy.deepcopy(self.objects.get((kind, name)))

    read = Kube.read  # the typed read, over `get`

    def read_list(self, view: Any, namespace: str | None = None, **_: Any) -> list[Any]:
        return []  # no pods: nothing stuck to replace

    def apply(self, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        n, self.applies = self.applies, self.applies + 1
        if n == self.fail_at:
            raise ApiError(503, "{}", "PATCH", obj["metadata"]["name"])
        stored = copy.deepcopy(obj)
        if "stringData" in stored:
            stored["data"] = {
                k: base64.b64encode(v.encode()).decode() for k, v in stored["stringData"].items()
            }
        self.objects[(obj["kind"], obj["metadata"]["name"])] = stored
        return stored


def decoded(kube: FailingKube, name: str) -> dict[str, str]:
    secret = kube.objects[("Secret", name)]
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def shown_password(kube: FailingKube) -> str:
    shown = decoded(kube, naming.initial_passwords_secret(NAME))
    return str(json.loads(shown["passwords.json"])["alice@example.org"])


def stored_hash(kube: FailingKube) -> str:
    creds = decoded(kube, naming.credentials_secret(NAME))
    for value in creds.values():
        for line in value.splitlines():
            if line.startswith("alice@example.org:"):
                return line.split(":")[1]
    raise AssertionError(f"no hash for alice in {sorted(creds)}")


def count_applies() -> int:
    kube = FailingKube(None)
    reconcile.apply_server(kube, SETTINGS, BODY, PLAN)  # type: ignore[arg-type]
    return kube.applies


SETTINGS = OperatorSettings(bcrypt_rounds=4, dkim_key_bits=1024)


@pytest.mark.parametrize("fail_at", range(count_applies()))
def test_no_failure_point_loses_the_generated_password(fail_at: int) -> None:
    kube = FailingKube(fail_at)
    with pytest.raises(ApiError):
        reconcile.apply_server(kube, SETTINGS, BODY, PLAN)  # type: ignore[arg-type]
    reconcile.apply_server(kube, SETTINGS, BODY, PLAN)  # type: ignore[arg-type]
    password, hashed = shown_password(kube), stored_hash(kube)
    assert bcrypt.checkpw(password.encode(), hashed.removeprefix("{BLF-CRYPT}").encode()), (
        f"failing at apply {fail_at}: the shown password does not match the stored hash"
    )
