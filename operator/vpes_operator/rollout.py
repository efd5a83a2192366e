"""A StatefulSet's forced rollback, done for it.

Kubernetes does not replace a pod made from a template that never became Running and
Ready when the template is changed again (its documentation's "forced rollback": the
pod must be deleted by hand). A fleet upgrade's bad image is exactly that: its pod
never turns Ready (the readiness probe is SMTP), and the rollback that restores the
previous image would leave it there. So after each apply of a server's StatefulSet,
a pod of the server that runs another image than the one wanted and is not ready is
deleted; the StatefulSet controller then makes it again from the current template.
A ready pod is never touched (the rolling update replaces it), nor one on the image.
"""

from __future__ import annotations

from . import naming
from .builders.workload import MAIL_CONTAINER
from .clients.kube import ApiError, Kube
from .models.kube import Pod


def stuck(pods: list[Pod], image: str) -> list[Pod]:
    """The pods that keep the server from running `image`: another image, not ready."""
    out = []
    for pod in pods:
        if pod.metadata.deletion_timestamp:
            continue
        spec = next((c for c in pod.spec.containers if c.name == MAIL_CONTAINER), None)
        state = next((c for c in pod.status.container_statuses if c.name == MAIL_CONTAINER), None)
        if spec is None or spec.image == image or (state is not None and state.ready):
            continue
        out.append(pod)
    return out


def replace_stuck(kube: Kube, namespace: str, server: str, image: str) -> list[str]:
    """Delete the server's stuck pods (only as they were read); their names."""
    deleted = []
    for pod in stuck(kube.read_list(Pod, namespace, labels=naming.pod_selector(server)), image):
        meta = pod.metadata
        try:
            kube.delete("v1", "Pod", namespace, meta.name, resource_version=meta.resource_version)
        except ApiError as e:
            if e.status != 409:  # it changed meanwhile (e.g. turned ready): next time
                raise
            continue
        deleted.append(meta.name)
    return deleted
