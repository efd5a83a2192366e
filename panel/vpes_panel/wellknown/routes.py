"""The endpoints behind the names every hosted domain's DNS records point at the
edge's web name, and their table (see routing.py for how a request finds one).

- autoconfig.<domain>/mail/config-v1.1.xml (Thunderbird; `?emailaddress=` optional,
  of that domain), and /.well-known/autoconfig/mail/config-v1.1.xml at any host with
  `?emailaddress=` (Thunderbird's second try, at the domain itself);
- autodiscover.<domain>/autodiscover/autodiscover.xml: Outlook POSTs its request
  (read by autodiscover.py); a GET with `?emailaddress=` is answered too;
  both name the edge's hosts, or the domain's server's own mail host when it is served
  (a lookup in the hosted index, `Hosting.mail_host`);
- mta-sts.<domain>/.well-known/mta-sts.txt: the policy (404 while MTA-STS is off);
- the Web Key Directory (OpenPGP public keys the mailboxes publish): advanced method at
  openpgpkey.<domain>/.well-known/openpgpkey/<domain>/hu/<hash> (and .../policy),
  direct method at <domain>/.well-known/openpgpkey/hu/<hash> (openpgp.wkd_lookup).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response

from .. import openpgp
from . import autodiscover, render
from .routing import Call, HostRoute, bad_request, not_found

XML = "text/xml; charset=utf-8"


async def autoconfig(call: Call) -> Response:
    target = await call.target(call.request.query_params.get("emailaddress"))
    if target is None:
        return not_found()
    mail_host = await call.web.mail_host(target.domain)
    body = render.autoconfig(call.web.settings.mail, target.domain, mail_host)
    return Response(body, media_type=XML)


async def outlook(call: Call) -> Response:
    if call.request.method == "POST":
        try:
            request = autodiscover.parse(await call.request.body())
        except autodiscover.BadRequestError as e:
            return bad_request(str(e))
        if request.schema not in (None, autodiscover.OUTLOOK_SCHEMA):
            return bad_request(f"only the response schema {autodiscover.OUTLOOK_SCHEMA} is served")
        address: str | None = request.address
    else:
        address = call.request.query_params.get("emailaddress")
    target = await call.target(address)
    if target is None:
        return not_found()
    mail_host = await call.web.mail_host(target.domain)
    body = render.autodiscover(call.web.settings.mail, target.address, mail_host)
    return Response(body, media_type=XML)


async def mta_sts(call: Call) -> Response:
    policy = render.mta_sts(call.web.settings.mail)
    if policy is None:
        return not_found()
    return PlainTextResponse(policy)


async def wkd(call: Call) -> Response:
    keys = await run_in_threadpool(call.web.hosted.keys)
    found = openpgp.wkd_lookup(keys, call.request.headers.get("host", ""), call.request.url.path)
    if found is None:
        return not_found()
    if found == "policy":
        return PlainTextResponse("")  # no options: its presence says the directory exists
    return Response(found, media_type="application/octet-stream")


ROUTES = [
    HostRoute("autoconfig", "/mail/config-v1.1.xml", autoconfig),
    HostRoute(None, "/.well-known/autoconfig/mail/config-v1.1.xml", autoconfig),
    HostRoute("autodiscover", "/autodiscover/autodiscover.xml", outlook, ("GET", "POST")),
    HostRoute("mta-sts", "/.well-known/mta-sts.txt", mta_sts),
    HostRoute("openpgpkey", "/.well-known/openpgpkey/{domain}/hu/{hash}", wkd),
    HostRoute("openpgpkey", "/.well-known/openpgpkey/{domain}/policy", wkd),
    HostRoute(None, "/.well-known/openpgpkey/hu/{hash}", wkd),
    HostRoute(None, "/.well-known/openpgpkey/policy", wkd),
]
