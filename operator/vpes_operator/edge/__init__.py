"""The shared edge's maps (routing, recipients, transport, access, antispam, login
proxy): pure builders from every PersonalMailServer, its plan and the platform
settings. `edgemaps` publishes them as one ConfigMap."""

from .maps import Edge, EdgeMaps, EdgeMapsError, build, config_map
from .routing import Routing, ServerKey

__all__ = ["Edge", "EdgeMaps", "EdgeMapsError", "Routing", "ServerKey", "build", "config_map"]
