"""My mailbox's vacation reply against the real API server, as a mailbox user: bad
input (no subject while on, too long, 0 or 31 days, a day that has passed) says why
next to the field and changes nothing; a good reply is one spec change, shown back
on the page, rendered by the operator into the tenant's vacation script; turned
off it stays for next time. The API server's own rules for a vacation say what is
wrong in words (the form's checks come first, its rules have the last word)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from vpes_operator import API_VERSION, naming
from vpes_operator.clients.kube import ApiError

from tests import panel_web

from . import panel_support
from .operator_support import wait_for
from .panel_support import PanelEnv, Tenant

panel_env = panel_support.panel_env


def vacation_of(env: PanelEnv, t: Tenant, address: str) -> object:
    mine = [m for m in env.server(t)["spec"]["mailboxes"] if m["address"] == address]
    assert mine, address
    return mine[0].get("vacation")


def save(c: httpx.Client, **fields: str) -> httpx.Response:
    values = {
        "vacation_on": "yes",
        "vacation_subject": "Away",
        "vacation_message": "Back soon.",
        "vacation_days": "7",
        "vacation_until": "",
        **fields,
    }
    return panel_web.post(
        c, "/account", "/account/vacation", **{k: v for k, v in values.items() if v is not None}
    )


def test_a_mailbox_user_sets_their_vacation_reply(panel_env: PanelEnv) -> None:
    t = panel_env.customer(("owner", "user"))
    user = f"user@{t.domain}"
    c = panel_env.login(user, t.passwords[user])
    page = c.get("/account")
    assert 'action="/account/vacation"' in page.text
    assert '<textarea id="vacation_message" name="vacation_message"' in page.text
    assert "Off: no one gets an automatic reply." in page.text
    before = panel_env.server(t)["metadata"]["generation"]

    yesterday = (datetime.now(UTC).date() - timedelta(days=2)).isoformat()
    for fields, field in [
        ({"vacation_subject": ""}, "vacation_subject"),
        ({"vacation_subject": "s" * 201}, "vacation_subject"),
        ({"vacation_message": "   "}, "vacation_message"),
        ({"vacation_message": "m" * 4001}, "vacation_message"),
        ({"vacation_days": "0"}, "vacation_days"),
        ({"vacation_days": "31"}, "vacation_days"),
        ({"vacation_until": yesterday}, "vacation_until"),
        ({"vacation_until": "soon"}, "vacation_until"),
    ]:
        r = save(c, **fields)
        assert r.status_code == 422, fields
        assert panel_web.field_error(r.text, field), fields
        assert 'aria-invalid="true"' in r.text
    assert panel_env.server(t)["metadata"]["generation"] == before
    assert vacation_of(panel_env, t, user) is None

    last = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()
    subject = 'Away "until" the 10th'
    r = save(
        c,
        vacation_subject=subject,
        vacation_message="Hi,\r\n.\r\nBack soon.",
        vacation_days="3",
        vacation_until=last,
    )
    assert r.status_code == 303, r.text
    assert vacation_of(panel_env, t, user) == {
        "enabled": True,
        "subject": subject,
        "message": "Hi,\n.\nBack soon.",
        "days": 3,
        "until": last,
    }
    assert vacation_of(panel_env, t, f"owner@{t.domain}") is None
    page = c.get("/account?done=vacation")
    assert "Your vacation reply is saved" in page.text
    assert "On: whoever writes to you gets" in page.text

    # The operator renders it into the tenant's vacation script.
    def rendered() -> str | None:
        cm = panel_env.admin.get("v1", "ConfigMap", t.namespace, naming.config_map(t.server))
        script = ((cm or {}).get("data") or {}).get("vacation.sieve", "")
        return script if '"Away \\"until\\" the 10th"' in script else None

    script = wait_for(rendered, "the vacation reply in the tenant's ConfigMap", 60)
    assert f'"vnd.dovecot.username" "{user}"' in script
    assert f'"date" "{last}"' in script

    # Off: no reply, the text kept for next time.
    r = save(c, vacation_on="", vacation_subject=subject, vacation_message="Back soon.")
    assert r.status_code == 303
    kept = vacation_of(panel_env, t, user)
    assert isinstance(kept, dict) and kept["enabled"] is False and kept["subject"] == subject
    assert "Off: no one gets an automatic reply." in c.get("/account").text


def test_a_stale_form_is_refused_next_to_the_switch(panel_env: PanelEnv) -> None:
    t = panel_env.customer(("owner", "user"))
    user = f"user@{t.domain}"
    c = panel_env.login(user, t.passwords[user])
    stale = str(panel_env.server(t)["metadata"]["generation"])
    assert save(c).status_code == 303
    generation = panel_env.server(t)["metadata"]["generation"]
    r = save(c, generation=stale, vacation_subject="Other")
    assert r.status_code == 409
    assert panel_web.field_error(r.text, "vacation_on")
    assert panel_env.server(t)["metadata"]["generation"] == generation


@pytest.mark.parametrize(
    ("vacation", "says"),
    [
        ({"subject": "two\nlines", "message": "m"}, "the subject must be one line"),
        ({"subject": "s", "message": "m", "days": 31}, "30"),
        ({"subject": "", "message": "m"}, "subject"),
    ],
)
def test_the_api_server_refuses_a_bad_vacation_in_words(
    panel_env: PanelEnv, vacation: dict[str, object], says: str
) -> None:
    t = panel_env.tenants[0] if panel_env.tenants else panel_env.customer(("owner", "user"))
    obj = copy.deepcopy(panel_env.server(t))
    obj["spec"]["mailboxes"][0]["vacation"] = vacation
    with pytest.raises(ApiError) as refused:
        panel_env.admin.apply(
            {
                "apiVersion": API_VERSION,
                "kind": "PersonalMailServer",
                "metadata": {"name": t.server, "namespace": t.namespace},
                "spec": obj["spec"],
            }
        )
    assert refused.value.status == 422
    assert says in str(refused.value) or says in refused.value.body
