"""Typed errors: what a person must fix (permanent) vs what may pass (temporary)."""

from __future__ import annotations

from .models.conditions import Permanence, permanence


class ReconcileError(Exception):
    """Something a reconcile could not do; becomes a condition with this reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ConfigError(ReconcileError):
    """Bad or impossible input: retrying will not help until someone changes something."""


class WaitingError(ReconcileError):
    """Something the server needs does not exist yet or is temporarily failing."""

    def __init__(self, reason: str, message: str, delay: float = 30.0) -> None:
        # The catalogue says which reasons wait (models.conditions); the phase follows it.
        if permanence(reason) is not Permanence.WAITING:
            raise ValueError(f"{reason} is not a waiting reason in the condition catalogue")
        super().__init__(reason, message)
        self.delay = delay
