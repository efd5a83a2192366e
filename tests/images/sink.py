"""A tiny SMTP sink standing in for the edge's outbound relay (settings.relay_host):
STARTTLS (a self-signed certificate), then AUTH PLAIN, as the relay asks of tenants.

Run inside the tenant container's network namespace (``nsenter --net=...``) so
that it listens on the pod's own 127.0.0.1 like a sidecar would:

    python sink.py 127.0.0.1 2525 OUTDIR

Each message accepted is written to OUTDIR/<n>.json: {"from", "to", "data", "tls",
"login", "password"}: whether the session was in TLS and who logged in.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import ssl
import sys
from pathlib import Path

from vpes_operator import crypto

_counter = itertools.count(1)


def _context(out: Path) -> ssl.SSLContext:
    cert, key = crypto.self_signed_certificate(["sink.tests.vpes"])
    (out / "sink.crt").write_text(cert)
    (out / "sink.key").write_text(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(out / "sink.crt", out / "sink.key")
    return context


async def _session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, out: Path, tls: ssl.SSLContext
) -> None:
    async def reply(text: str) -> None:
        writer.write(text.encode() + b"\r\n")
        await writer.drain()

    sender: str = ""
    recipients: list[str] = []
    secure, login, password = False, "", ""
    await reply("220 sink.tests.vpes ESMTP")
    while line := await reader.readline():
        verb = line[:4].decode(errors="replace").upper()
        arg = line[5:].strip().decode(errors="replace")
        if verb in ("EHLO", "HELO"):
            offer = "AUTH PLAIN" if secure else "STARTTLS"
            await reply(f"250-sink.tests.vpes\r\n250 {offer}")
        elif verb == "STAR" and not secure:
            await reply("220 2.0.0 Ready to start TLS")
            await writer.start_tls(tls)
            secure = True
        elif verb == "AUTH" and secure:
            parts = arg.split()
            blob = parts[1] if len(parts) > 1 else ""
            if not blob:
                await reply("334 ")
                blob = (await reader.readline()).strip().decode()
            _authz, login, password = base64.b64decode(blob).decode().split("\0")
            await reply("235 2.7.0 Authentication successful")
        elif verb == "MAIL":
            sender, recipients = arg.split(":", 1)[1].split()[0].strip("<>"), []
            await reply("250 2.1.0 Ok")
        elif verb == "RCPT":
            recipients.append(arg.split(":", 1)[1].split()[0].strip("<>"))
            await reply("250 2.1.5 Ok")
        elif verb == "DATA":
            await reply("354 go ahead")
            data = b""
            while (chunk := await reader.readline()) not in (b".\r\n", b""):
                data += chunk[1:] if chunk.startswith(b"..") else chunk
            doc = {
                "from": sender,
                "to": recipients,
                "data": data.decode(errors="replace"),
                "tls": secure,
                "login": login,
                "password": password,
            }
            path = out / f"{next(_counter)}.json"
            path.with_suffix(".tmp").write_text(json.dumps(doc))
            path.with_suffix(".tmp").rename(path)
            await reply("250 2.0.0 Ok: queued")
        elif verb == "RSET":
            sender, recipients = "", []
            await reply("250 2.0.0 Ok")
        elif verb == "QUIT":
            await reply("221 2.0.0 Bye")
            break
        else:
            await reply("250 2.0.0 Ok")
    writer.close()


async def _main(host: str, port: int, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tls = _context(out)
    server = await asyncio.start_server(lambda r, w: _session(r, w, out, tls), host, port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))
