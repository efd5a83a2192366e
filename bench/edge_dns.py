"""A resolver for the benchmark's containers that answers every query at once with
NXDOMAIN (what a cluster's DNS answers for the ``.example`` names the load uses).

Without it the containers ask this machine's resolver through podman's NAT, where
about one UDP query in 60 is lost: the tenant's and the edge's Postfix then wait
the 5 s resolver timeout (every delivery stalls behind it), Rspamd its 1 s
retransmit. That is the machine's network, not the edge, so it is kept out.
"""

from __future__ import annotations

import socket
import struct
import threading


class NxResolver:
    """A UDP DNS server on ``address``:53 (a thread) that says no name exists."""

    def __init__(self, address: str = "0.0.0.0") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((address, 53))
        except OSError as e:
            self.sock.close()
            raise RuntimeError(f"the benchmark's resolver needs UDP port 53 ({e})") from e
        self.queries = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return  # closed
            answer = nxdomain(data)
            if answer:
                self.queries += 1
                self.sock.sendto(answer, peer)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def nxdomain(query: bytes) -> bytes:
    """The reply to ``query``: its id and question, QR, RD as asked, RA, RCODE 3."""
    if len(query) < 12:
        return b""
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount != 1:
        return b""
    end = 12
    while end < len(query) and query[end]:
        end += 1 + query[end]  # a label: its length, then the label
    question = query[12 : end + 5]  # the name's zero byte, QTYPE, QCLASS
    reply_flags = 0x8000 | (flags & 0x7900) | 0x0080 | 3
    return struct.pack("!HHHHHH", ident, reply_flags, 1, 0, 0, 0) + question
