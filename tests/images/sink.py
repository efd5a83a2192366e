"""A tiny SMTP sink standing in for the edge's outbound relay (settings.relay_host).

Run inside the tenant container's network namespace (``nsenter --net=...``) so
that it listens on the pod's own 127.0.0.1 like a sidecar would:

    python sink.py 127.0.0.1 2525 OUTDIR

Each message accepted is written to OUTDIR/<n>.json: {"from", "to", "data"}.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from pathlib import Path

_counter = itertools.count(1)


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, out: Path) -> None:
    async def reply(text: str) -> None:
        writer.write(text.encode() + b"\r\n")
        await writer.drain()

    sender: str = ""
    recipients: list[str] = []
    await reply("220 sink.tests.vpes ESMTP")
    while line := await reader.readline():
        verb = line[:4].decode(errors="replace").upper()
        arg = line[5:].strip().decode(errors="replace")
        if verb in ("EHLO", "HELO"):
            await reply("250 sink.tests.vpes")
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
            doc = {"from": sender, "to": recipients, "data": data.decode(errors="replace")}
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
    server = await asyncio.start_server(lambda r, w: _session(r, w, out), host, port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))
