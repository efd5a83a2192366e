"""The edge's Postfix metrics (images/edge/metrics): which log lines count as
what, that nothing a client sends can add a series, the queue's sizes from
its directories, and the exposition and the tee around them."""

from __future__ import annotations

import io
import os
import socket
import socketserver
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "edge" / "metrics"))

import vpes_edge_log as log
import vpes_edge_metrics as exporter

pytestmark = pytest.mark.unit

STAMP = "Dec  6 00:12:01 mx.edge.test "
ENV = "; from=<carol@example.org> to=<{rcpt}> proto=ESMTP helo=<client.example>"

# Lines as Postfix 3.7 writes them (smtpd.c, postscreen, cleanup_milter.c,
# smtpd_sasl_glue.c, the delivery agents), with the edge's syslog names.
REJECTS = [
    (
        "postfix/mx-plain/smtpd[321]: NOQUEUE: reject: RCPT from unknown[10.88.0.1]: 550 5.1.1 "
        "<nobody@example.org>: Recipient address rejected: User unknown in relay recipient table"
        + ENV.format(rcpt="nobody@example.org"),
        "unknown_recipient",
    ),
    (
        "postfix/mx/smtpd[322]: NOQUEUE: reject: RCPT from unknown[198.51.100.25]: 554 5.7.1 "
        "<x@elsewhere.example>: Relay access denied" + ENV.format(rcpt="x@elsewhere.example"),
        "relay_denied",
    ),
    (
        "postfix/mx/smtpd[323]: NOQUEUE: reject: RCPT from unknown[198.51.100.25]: 450 4.7.1 "
        "<someone@suspended.example>: Recipient address rejected: suspended.example: this mail "
        "server is suspended, try again later" + ENV.format(rcpt="someone@suspended.example"),
        "suspended",
    ),
    (
        "postfix/mx/postscreen[12]: NOQUEUE: reject: RCPT from [203.0.113.9]:40025: 550 5.5.1 "
        "Protocol error; from=<spam@example.com>, to=<bob@example.net>, proto=ESMTP, helo=<x>",
        "postscreen",
    ),
    (
        "postfix/mx/postscreen[12]: NOQUEUE: reject: RCPT from [203.0.113.9]:40025: 550 5.7.1 "
        "Service unavailable; client [203.0.113.9] blocked using zen.spamhaus.org; "
        "from=<spam@example.com>, to=<bob@example.net>, proto=ESMTP, helo=<x>",
        "dnsbl",
    ),
    (
        "postfix/cleanup[401]: 4F2A1C: milter-reject: END-OF-MESSAGE from unknown[10.88.0.1]: "
        "5.7.1 Gtube pattern; from=<carol@example.org> to=<bob@example.net> proto=ESMTP "
        "helo=<client.example>",
        "spam",
    ),
    (
        "postfix/mx/smtpd[324]: NOQUEUE: milter-reject: CONNECT from unknown[10.88.0.1]: "
        "451 4.7.1 Service unavailable - try again later; proto=SMTP",
        "milter_tempfail",
    ),
    (
        "postfix/relay-in/smtpd[55]: warning: unknown[10.88.0.7]: SASL PLAIN authentication "
        "failed: UGFzc3dvcmQ6",
        "auth_failed",
    ),
    (
        "postfix/relay-in/smtpd[56]: NOQUEUE: reject: MAIL from unknown[10.88.0.7]: 553 5.7.1 "
        "<ceo@other.example>: Sender address rejected: not owned by user acme/mail; "
        "from=<ceo@other.example> proto=ESMTP helo=<acme>",
        "sender_not_owned",
    ),
    (
        "postfix/relay-in/smtpd[57]: NOQUEUE: reject: RCPT from unknown[10.88.0.7]: 450 4.7.1 "
        "<x@example.com>: Recipient address rejected: sent 4 recipients in the last hour, the "
        "plan's limit is 3: outbound mail is held (it waits in the server's queue) until "
        "released with `kubectl annotate pms lim -n lim vpes.io/release-outbound=$(date +%s) "
        "--overwrite`" + ENV.format(rcpt="x@example.com"),
        "held",
    ),
    (
        "postfix/relay-in/smtpd[58]: NOQUEUE: reject: RCPT from unknown[10.88.0.7]: 450 4.7.1 "
        "<x@example.com>: Recipient address rejected: <lim/mail> reached its limit of 3 "
        "recipients an hour" + ENV.format(rcpt="x@example.com"),
        "over_limit",
    ),
    (
        "postfix/mx/smtpd[325]: NOQUEUE: reject: MAIL from unknown[10.88.0.1]: 504 5.5.2 "
        "<carol>: Sender address rejected: need fully-qualified address; from=<carol> "
        "proto=ESMTP helo=<client.example>",
        "bad_sender",
    ),
    (
        "postfix/mx/smtpd[326]: NOQUEUE: reject: RCPT from unknown[10.88.0.1]: 504 5.5.2 "
        "<bob>: Recipient address rejected: need fully-qualified address" + ENV.format(rcpt="bob"),
        "bad_recipient",
    ),
    (
        "postfix/mx/smtpd[327]: NOQUEUE: reject: HELO from unknown[10.88.0.1]: 501 5.5.2 "
        "<bad helo>: Helo command rejected: Invalid name; proto=SMTP helo=<bad helo>",
        "bad_helo",
    ),
    (
        "postfix/mx/smtpd[328]: 4F2A1D: reject: DATA from unknown[10.88.0.1]: 503 5.5.0 "
        "<DATA>: Data command rejected: Improper use of SMTP command pipelining; "
        "from=<carol@example.org> to=<bob@example.net> proto=ESMTP helo=<client.example>",
        "protocol",
    ),
    (
        "postfix/mx/smtpd[329]: NOQUEUE: reject: RCPT from unknown[10.88.0.1]: 451 4.3.5 "
        "Server configuration error" + ENV.format(rcpt="bob@example.net"),
        "other",
    ),
]

DELIVERIES = [
    (
        "postfix/mx/smtp[400]: 4F2A1C: to=<bob@example.net>, relay=10.88.0.5[10.88.0.5]:25, "
        "delay=0.2, delays=0.1/0/0.05/0.05, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 77)",
        "sent",
    ),
    (
        "postfix/mx/smtp[401]: 4F2A1E: to=<someone@suspended.example>, relay=none, delay=30, "
        "delays=0.1/0/30/0, dsn=4.4.1, status=deferred (connect to 192.0.2.1[192.0.2.1]:25: "
        "Connection timed out)",
        "deferred",
    ),
    (
        "postfix/error[402]: 4F2A1F: to=<x@example.com>, relay=none, delay=0.1, "
        "delays=0.1/0/0/0, dsn=5.3.0, status=bounced (no route to this domain's mail server)",
        "bounced",
    ),
    (
        "postfix/qmgr[90]: 4F2A20: from=<carol@example.org>, status=expired, returned to sender",
        "expired",
    ),
]

# Lines that count nothing: the rest of a session, other programs, and lines
# that only mention the words (a client's HELO, a remote server's reply).
NOTHING = [
    "postfix/mx/smtpd[321]: connect from unknown[10.88.0.1]",
    "postfix/mx/smtpd[321]: disconnect from unknown[10.88.0.1] ehlo=1 mail=1 rcpt=0/1 quit=1",
    "postfix/mx/postscreen[12]: PREGREET 11 after 0.01 from [203.0.113.9]:40025: EHLO x\\r\\n",
    "postfix/mx/smtpd[321]: reject_warning: RCPT from x: 550 5.1.1 <a@b>: User unknown",
    "postfix/qmgr[90]: 4F2A1C: from=<carol@example.org>, size=420, nrcpt=1 (queue active)",
    "postfix/mx/smtpd[321]: 4F2A1C: client=unknown[10.88.0.1]",
    "postfix/mx/smtpd[321]: NOQUEUE: filter: RCPT from x: <status=sent>: ...",
    "vpes-edge: maps version 3 loaded (changed): 2 domains",
    "opendkim[7]: 4F2A1C: DKIM-Signature field added (s=vpes, d=example.org)",
    "dovecot: imap-login: NOQUEUE: reject: RCPT from x[1.2.3.4]: 550 5.1.1 User unknown",
    "postfix/mx/smtpd[321]: lost connection after EHLO from unknown[10.88.0.1]",
    "garbage without a program",
    "",
]


@pytest.mark.parametrize(("line", "reason"), REJECTS, ids=[r for _, r in REJECTS])
def test_refusals_are_counted_by_reason(line: str, reason: str) -> None:
    assert log.classify(STAMP + line) == log.Event(reason=reason)
    assert reason in log.REASONS


def test_every_reason_has_a_line() -> None:
    assert {r for _, r in REJECTS} == set(log.REASONS)


@pytest.mark.parametrize(("line", "status"), DELIVERIES, ids=[s for _, s in DELIVERIES])
def test_deliveries_are_counted_by_status(line: str, status: str) -> None:
    assert log.classify(STAMP + line) == log.Event(status=status)


@pytest.mark.parametrize("line", NOTHING)
def test_other_lines_count_nothing(line: str) -> None:
    assert log.classify(STAMP + line) is None


@pytest.mark.parametrize(
    "address",
    [
        '"this mail server is suspended"@example.org',
        '"Relay access denied>: x"@example.org',
        "nobody@example.org; from=<x> Relay access denied",
        "a\u00e9\u4e2d@example.org",
    ],
)
def test_what_a_client_chose_never_picks_the_reason(address: str) -> None:
    # The address is the client's: Postfix's own words after it decide.
    line = (
        "postfix/mx/smtpd[1]: NOQUEUE: reject: RCPT from unknown[10.88.0.1]: 550 5.1.1 "
        f"<{address}>: Recipient address rejected: User unknown in relay recipient table"
        f"; from=<Relay access denied@x> to=<{address}> proto=ESMTP helo=<suspended>"
    )
    event = log.classify(STAMP + line)
    assert event is not None and event.reason in {"unknown_recipient", "other"}


def test_labels_stay_bounded_whatever_the_log_says() -> None:
    counts = exporter.Counts()
    for i in range(500):
        counts.count(
            f"{STAMP}postfix/mx/smtpd[{i}]: NOQUEUE: reject: RCPT from h{i}[10.0.0.{i % 250}]: "
            f"5{i % 10}0 5.{i % 8}.{i} <u{i}@d{i}.example>: Recipient address rejected: "
            f"reason number {i}; from=<f{i}@x> to=<u{i}@d{i}.example> proto=ESMTP helo=<h{i}>"
        )
    rejections, deliveries = counts.snapshot()
    assert set(rejections) == set(log.REASONS) and set(deliveries) == set(log.STATUSES)
    assert rejections["bad_recipient"] == 500
    assert sum(rejections.values()) == 500


def queue(tmp_path: Path, files: dict[str, int]) -> Path:
    spool = tmp_path / "spool"
    for name in (*exporter.QUEUES, "defer", "maildrop", "pid"):
        (spool / name).mkdir(parents=True)
    for path, n in files.items():
        (spool / path).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (spool / path / f"{path.replace('/', '')}{i:04X}").write_bytes(b"x")
    return spool


def test_queue_sizes_count_hashed_directories_and_only_the_queues(tmp_path: Path) -> None:
    spool = queue(tmp_path, {"active": 2, "deferred/A": 3, "deferred/F": 1, "hold": 1})
    (spool / "defer" / "A").mkdir()
    (spool / "defer" / "A" / "ABC").write_bytes(b"log")  # deferral logs: not messages
    (spool / "maildrop" / "x").write_bytes(b"x")
    assert exporter.queue_sizes(spool) == {"incoming": 0, "active": 2, "deferred": 4, "hold": 1}


def test_queue_sizes_are_absent_when_unreadable(tmp_path: Path) -> None:
    assert exporter.queue_sizes(tmp_path / "missing") is None


def test_exposition_names_role_and_every_reason(tmp_path: Path) -> None:
    spool = queue(tmp_path, {"deferred/0": 5})
    counts = exporter.Counts()
    for line, _ in [*REJECTS[:2], REJECTS[0], DELIVERIES[1]]:
        counts.count(STAMP + line)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter.EdgeCollector("mx", counts, spool))
    text = generate_latest(registry).decode()
    assert 'vpes_edge_postfix_queue_messages{queue="deferred",role="mx"} 5.0' in text
    assert 'vpes_edge_postfix_rejections_total{reason="unknown_recipient",role="mx"} 2.0' in text
    assert 'vpes_edge_postfix_rejections_total{reason="relay_denied",role="mx"} 1.0' in text
    assert 'vpes_edge_postfix_rejections_total{reason="spam",role="mx"} 0.0' in text
    assert 'vpes_edge_postfix_deliveries_total{role="mx",status="deferred"} 1.0' in text
    assert "# TYPE vpes_edge_postfix_rejections_total counter" in text


def test_no_queue_gauge_when_the_queue_cannot_be_read(tmp_path: Path) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter.EdgeCollector("relay", exporter.Counts(), tmp_path / "none"))
    text = generate_latest(registry).decode()
    assert "vpes_edge_postfix_queue_messages" not in text
    assert 'vpes_edge_postfix_rejections_total{reason="other",role="relay"} 0.0' in text


def test_tee_passes_every_byte_on_and_counts_lines_split_between_reads() -> None:
    line = (STAMP + REJECTS[0][0] + "\n").encode()
    data = b"first line \xff\n" + line + line[:40]
    read, write = os.pipe()
    counts = exporter.Counts()
    out = io.BytesIO()
    # Written in pieces that cut the counted line in two.
    os.write(write, data[:30])
    os.write(write, data[30:90])
    os.write(write, data[90:] + line[40:])
    os.close(write)
    exporter.tee(read, out, counts)
    os.close(read)
    assert out.getvalue() == data + line[40:]
    assert counts.snapshot()[0]["unknown_recipient"] == 2


# --- the relay: whose message Rspamd refused --------------------------------------

RELAY_CLIENT = (
    "postfix/relay-in/smtpd[321]: {qid}: client=unknown[10.88.0.9], sasl_method=PLAIN, "
    "sasl_username={login}"
)
MILTER_REJECT = (
    "postfix/cleanup[401]: {qid}: milter-reject: END-OF-MESSAGE from unknown[10.88.0.9]: "
    "{reply}; from=<a@acme.example> to=<x@elsewhere.test> proto=ESMTP helo=<tenant>"
)


def reject(qid: str, reply: str = "5.7.1 Gtube pattern") -> str:
    return STAMP + MILTER_REJECT.format(qid=qid, reply=reply)


def client(qid: str, login: str) -> str:
    return STAMP + RELAY_CLIENT.format(qid=qid, login=login)


def test_the_login_of_a_message_rspamd_refused_comes_from_its_queue_id() -> None:
    spam = log.SpamLogins()
    assert spam.observe(client("4F2A1C", "acme/mail")) is None
    assert spam.observe(client("5B3D2E", "other/mail")) is None
    assert spam.observe(reject("4F2A1C")) == "acme/mail"
    assert spam.observe(reject("4F2A1C")) is None  # once per message
    # A 4xx (Rspamd down, a tempfail) is no spam; the id is done with all the same.
    assert spam.observe(reject("5B3D2E", "4.7.1 Try again later")) is None
    assert spam.logins == {}
    # Delivered and removed: a later message with the same id is someone else's.
    spam.observe(client("6C4E3F", "acme/mail"))
    spam.observe(STAMP + "postfix/qmgr[90]: 6C4E3F: removed")
    assert spam.observe(reject("6C4E3F")) is None
    # The MX's client lines have no login; an unknown id names nobody.
    spam.observe(STAMP + "postfix/mx/smtpd[321]: 7D5F4A: client=unknown[10.88.0.1]")
    assert spam.observe(reject("7D5F4A")) is None


def test_what_a_client_sends_names_no_login() -> None:
    spam = log.SpamLogins()
    # A HELO or an address that carries the words is not smtpd's client line.
    spam.observe(
        STAMP + "postfix/relay-in/smtpd[321]: 8E6A5B: reject: RCPT from x[10.88.0.9]: 450 4.7.1 "
        "<y@z>: x; from=<a, sasl_method=PLAIN, sasl_username=evil/mail@x> helo=<h>"
    )
    spam.observe(STAMP + "opendkim[7]: 8E6A5B: client=x, sasl_method=PLAIN, sasl_username=evil/m")
    assert spam.observe(reject("8E6A5B")) is None


def test_the_ids_kept_are_bounded() -> None:
    spam = log.SpamLogins(limit=2)
    for i, qid in enumerate(("A1", "B2", "C3")):
        spam.observe(client(qid, f"s{i}/mail"))
    assert list(spam.logins) == ["B2", "C3"]
    assert spam.observe(reject("A1")) is None
    assert spam.observe(reject("C3")) == "s2/mail"


class PolicyStandIn(socketserver.StreamRequestHandler):
    """Answers the policy protocol like the relay's service, recording requests."""

    requests: list[str] = []

    def handle(self) -> None:
        lines: list[str] = []
        while raw := self.rfile.readline():
            line = raw.decode().rstrip("\n")
            if line:
                lines.append(line)
                continue
            PolicyStandIn.requests.append(" ".join(lines))
            lines = []
            self.wfile.write(b"action=OK\n\n")


def test_the_forwarder_tells_the_policy_service_and_gives_up_on_none() -> None:
    PolicyStandIn.requests = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), PolicyStandIn)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        forwarder = exporter.SpamForwarder(server.server_address[:2], pause=0).start()  # type: ignore[arg-type]
        counts = exporter.Counts(forwarder)
        for line in (client("4F2A1C", "acme/mail"), reject("4F2A1C")):
            counts.count(line)
        assert counts.snapshot()[0]["spam"] == 1  # the metric still counts it
        deadline = time.monotonic() + 5
        while not PolicyStandIn.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert PolicyStandIn.requests == ["request=vpes_spam_event sasl_username=acme/mail"]
        assert forwarder.send("other/mail") == "OK"  # the same connection, kept
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        nobody = free.getsockname()
    assert exporter.SpamForwarder(nobody, pause=0).send("acme/mail") == ""
