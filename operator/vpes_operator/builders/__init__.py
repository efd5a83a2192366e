"""Desired state: pure functions from (server, plan, settings, material) to objects."""

from .server import ServerInputs, desired_objects

__all__ = ["ServerInputs", "desired_objects"]
