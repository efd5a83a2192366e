"""Outlook's autodiscover request, read without trusting it.

The body is XML from anyone on the internet. It is parsed with expat directly
(defusedxml is not a dependency): any document type declaration is refused
before anything in it is read (so no entity can be declared, internal or
external, and none expanded: billion laughs, XXE), parameter entities are never
parsed, and a reference to an undeclared entity is a syntax error. Its size is
bounded before it gets here (the app's body limit: 413). Only the text of
EMailAddress and AcceptableResponseSchema (under Request, whatever namespace)
is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn
from xml.parsers import expat

# The only response schema served (the "outlook" one: POP3, IMAP, SMTP settings).
OUTLOOK_SCHEMA = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
MAX_DEPTH = 8
MAX_TEXT = 1024


class BadRequestError(ValueError):
    """The body is not an autodiscover request we answer; the message says why."""


@dataclass(frozen=True)
class Request:
    address: str
    schema: str | None  # AcceptableResponseSchema, if the request names one


def _refuse_dtd(*_: object) -> NoReturn:
    raise BadRequestError("document type declarations and entities are not accepted")


class _Reader:
    """Collects the text of Autodiscover/Request/<field> elements."""

    FIELDS = ("EMailAddress", "AcceptableResponseSchema")

    def __init__(self) -> None:
        self.path: list[str] = []
        self.values: dict[str, str] = {}
        self.text: list[str] = []

    def start(self, name: str, _attrs: dict[str, str]) -> None:
        self.path.append(name.rpartition(" ")[2])
        if len(self.path) > MAX_DEPTH:
            raise BadRequestError("the request is nested too deeply")
        self.text = []

    def end(self, _name: str) -> None:
        if self.path[-2:-1] == ["Request"] and self.path[-1] in self.FIELDS:
            self.values.setdefault(self.path[-1], "".join(self.text).strip())
        self.path.pop()
        self.text = []

    def chars(self, data: str) -> None:
        if sum(map(len, self.text)) + len(data) > MAX_TEXT:
            raise BadRequestError("an element's text is too long")
        self.text.append(data)


def parse(body: bytes) -> Request:
    """The request's address and schema; BadRequestError for anything else."""
    reader = _Reader()
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.UnparsedEntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.chars
    try:
        parser.Parse(body, True)
    except expat.ExpatError as e:
        raise BadRequestError(f"the request is not well-formed XML ({e})") from None
    address = reader.values.get("EMailAddress")
    if not address:
        raise BadRequestError("the request names no EMailAddress")
    return Request(address, reader.values.get("AcceptableResponseSchema") or None)
