"""What the calendar and contacts tests (and bench/dav.py) store: an event, a
contact, and the extended MKCOL body that makes an address book."""

from __future__ import annotations


def event(uid: object, summary: str, hour: int = 18) -> str:
    """One VEVENT on 2026-12-24 at `hour` UTC, two hours long."""
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//vpes tests//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20261206T120000Z\r\nDTSTART:20261224T{hour:02d}0000Z\r\n"
        f"DURATION:PT2H\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def contact(uid: object) -> str:
    return (
        f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:Dana Example\r\n"
        "EMAIL:dana@elsewhere.example\r\nEND:VCARD\r\n"
    )


ADDRESSBOOK_MKCOL = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<D:mkcol xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav">'
    "<D:set><D:prop><D:resourcetype><D:collection/><C:addressbook/></D:resourcetype>"
    "<D:displayname>Contacts</D:displayname></D:prop></D:set></D:mkcol>"
)
