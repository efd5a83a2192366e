"""Read a tenant's usage report (``storage`` says what it holds) from its pod.

The tenant writes the report and closes as soon as a connection arrives
(Postfix's spawn runs ``vpes-usage``); nothing is sent to it. The pod is not
trusted: the reply is bounded in size and time, and checked by
``storage.parse_report``.
"""

from __future__ import annotations

import socket
import time

from ..render.layout import USAGE_PORT
from ..storage import MAX_REPORT_BYTES, Report, ReportError, parse_report


def read_report(
    host: str, port: int = USAGE_PORT, timeout: float = 5.0, connect_timeout: float = 2.0
) -> Report:
    """Connect, read until the pod closes, parse; OSError or ReportError on failure."""
    chunks: list[bytes] = []
    size = 0
    with socket.create_connection((host, port), timeout=connect_timeout) as conn:
        deadline = time.monotonic() + timeout
        conn.shutdown(socket.SHUT_WR)  # nothing to say: the pod only writes
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ReportError(f"no complete report within {timeout:.0f} s")
            conn.settimeout(left)
            chunk = conn.recv(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_REPORT_BYTES:
                raise ReportError(f"the report is larger than {MAX_REPORT_BYTES} bytes")
            chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("ascii")
    except UnicodeDecodeError as e:
        raise ReportError("the report is not ASCII") from e
    return parse_report(text)
