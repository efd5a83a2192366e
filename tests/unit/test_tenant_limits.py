"""The tenant's connection limits are coherent with its process limits."""

from __future__ import annotations

import pytest
from vpes_operator.render import tenant

from .render_support import main_cf, rendered

pytestmark = pytest.mark.unit
__all__ = ["rendered"]  # the fixture


def test_one_client_cannot_hold_more_than_a_quarter_of_a_service() -> None:
    assert tenant.SMTPD_CLIENT_CONNECTIONS * 4 <= tenant.POSTFIX_PROCESS_LIMIT


def test_main_cf_limits_clients_and_cuts_idle_ones_under_stress(
    rendered: dict[str, str],
) -> None:
    params = main_cf(rendered["postfix-main.cf"])
    assert params["smtpd_client_connection_count_limit"] == str(tenant.SMTPD_CLIENT_CONNECTIONS)
    assert params["default_process_limit"] == str(tenant.POSTFIX_PROCESS_LIMIT)
    assert params["smtpd_timeout"] == "${stress?{10s}:{300s}}"
    assert params["smtpd_hard_error_limit"] == "${stress?{1}:{20}}"
