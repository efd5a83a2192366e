"""The shared antispam image: Bayes learns per user, the controller and Redis
take only their passwords, and neither password reaches a log. The containers
are the conftest's ``antispam`` (rspamd_support.py).
"""

from __future__ import annotations

import httpx
import pytest

from .rspamd_support import (
    CONTROLLER,
    CONTROLLER_PASSWORD,
    HAM,
    REDIS_PASSWORD,
    Antispam,
    RedisError,
    message,
    redis,
)
from .tenant import podman

pytestmark = pytest.mark.images


# --- Bayes, per user, and the controller's password --------------------------------------


def test_learn_spam_is_per_user(antispam: Antispam) -> None:
    spam = message(
        "miracle watches",
        "Replica watches and miracle pills at wholesale prices, shipped worldwide in "
        "discreet packages, no prescription needed, pay by gift card or crypto today.\n",
    )
    r = antispam.learn("spam", spam, "alice@standard.example", CONTROLLER_PASSWORD)
    assert r.status_code == 200, r.text
    assert r.json().get("success") is True, r.text
    keys = antispam.redis_keys()
    alice = [k for k in keys if "alice@standard.example" in k]
    assert alice, keys
    assert not [k for k in keys if "bob@standard.example" in k], keys
    learns = redis(antispam.host, "HGET", "RSalice@standard.example", "learns_spam")
    assert learns == b"1", (learns, keys)
    assert redis(antispam.host, "HGET", "RSbob@standard.example", "learns_spam") is None


@pytest.mark.parametrize("password", ["wrong-password-1234", ""])
def test_controller_refuses_a_wrong_password(antispam: Antispam, password: str) -> None:
    r = antispam.learn("ham", message("minutes", HAM), "bob@standard.example", password)
    assert r.status_code == 401, r.text
    assert not [k for k in antispam.redis_keys() if "bob@standard.example" in k]


def test_controller_stat_and_metrics_need_no_password(antispam: Antispam) -> None:
    stat = httpx.get(f"http://{antispam.host}:{CONTROLLER}/stat", timeout=10)
    assert stat.status_code == 200 and "scanned" in stat.json()
    metrics = httpx.get(f"http://{antispam.host}:{CONTROLLER}/metrics", timeout=10)
    assert metrics.status_code == 200 and "rspamd_scanned_total" in metrics.text


def test_redis_needs_its_password(antispam: Antispam) -> None:
    with pytest.raises(RedisError, match=r"WRONGPASS|invalid password"):
        redis(antispam.host, "PING", password="not-the-password")
    assert redis(antispam.host, "CONFIG", "GET", "save") == [b"save", b""]


def test_no_password_in_the_logs(antispam: Antispam) -> None:
    logs = antispam.logs() + podman("logs", antispam.redis, check=False).stdout
    assert REDIS_PASSWORD not in logs
    assert CONTROLLER_PASSWORD not in logs
