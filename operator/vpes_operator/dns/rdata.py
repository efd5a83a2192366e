"""Record data between the forms people, DNS messages and provider APIs use.

The canonical form of a value is the one `records.Record.value` uses: TXT as
the joined text, everything else as its presentation text with absolute names
(trailing dot), lowercase.
"""

from __future__ import annotations

import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.TXT import TXT

TXT_CHUNK = 255


def to_rdata(rtype: str, value: str) -> dns.rdata.Rdata:
    """The rdata of a canonical value (TXT split into 255-byte strings)."""
    if rtype == "TXT":
        raw = value.encode()
        chunks = [raw[i : i + TXT_CHUNK] for i in range(0, len(raw), TXT_CHUNK)] or [b""]
        return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)
    return dns.rdata.from_text(dns.rdataclass.IN, rtype, value)


def canonical(rdata: dns.rdata.Rdata) -> str:
    """The canonical value of an rdata read from a message or an API."""
    if isinstance(rdata, TXT):
        return b"".join(rdata.strings).decode("utf-8", "replace")
    return rdata.to_text().lower()


def normalise(rtype: str, value: str) -> str:
    """A value as the DNS will give it back (e.g. names lowercased)."""
    return canonical(to_rdata(rtype, value))


def presentation(rtype: str, value: str) -> str:
    """Zone-file text of a canonical value: TXT quoted and split, names absolute."""
    return to_rdata(rtype, value).to_text()


def from_presentation(rtype: str, text: str) -> str:
    """The canonical value of zone-file text (as Route53 returns it)."""
    return canonical(dns.rdata.from_text(dns.rdataclass.IN, rtype, text))
