"""vpes: a Kubernetes operator that gives each customer an isolated mail server."""

GROUP = "vpes.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
