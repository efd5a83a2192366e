"""Manual: nothing is published; the status (and the panel) say what to publish."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..ownership import Owned
from ..records import Record
from .base import Result

NAME = "manual"


class ManualProvider:
    name = NAME

    def __init__(self, signed: Callable[[str], bool]) -> None:
        self._signed = signed

    def publish(self, records: Sequence[Record], owned: Owned) -> Result:
        return Result(Owned(provider=NAME))

    def remove(self, owned: Owned) -> Result:
        return Result(Owned(provider=NAME))

    def signed(self, domain: str) -> bool:
        return self._signed(domain)
