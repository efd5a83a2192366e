"""The one error type of the package."""


class ClusterError(RuntimeError):
    """The local control plane could not be built, started, reached or stopped."""
