"""The baseline of the operator benchmarks: what the operator's builders make for a
server, applied straight to the API server without the operator."""

from __future__ import annotations

from typing import Any

from vpes_operator.builders import ServerInputs, desired_objects
from vpes_operator.builders.meta import Owner
from vpes_operator.clients.kube import Kube
from vpes_operator.credentials import gather
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.models.server import PersonalMailServerSpec
from vpes_operator.settings import OperatorSettings


def apply_children(
    kube: Kube,
    name: str,
    ns: str,
    server: dict[str, Any],
    plan: tuple[str, MailPlanSpec],
    settings: OperatorSettings,
) -> None:
    """Build the child objects of server ``name`` (spec ``server``, plan ``(name,
    spec)``) with the operator's own builders and apply them straight. An owner
    ConfigMap ``<name>-owner`` stands in for the PersonalMailServer (garbage
    collection)."""
    plan_name, plan_spec = plan
    s = PersonalMailServerSpec.model_validate(server)
    # The same material work the operator does for a new server.
    material = gather(
        s,
        {},
        lambda _n, _k: None,
        service_host=f"{name}.{ns}.svc",
        bcrypt_rounds=settings.bcrypt_rounds,
        dkim_bits=settings.dkim_key_bits,
    )
    owner_obj = kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-owner", "namespace": ns},
        }
    )
    owner = Owner(name=name, namespace=ns, uid=owner_obj["metadata"]["uid"], plan=plan_name)
    for obj in desired_objects(ServerInputs(owner, s, plan_spec, settings, material)):
        for ref in obj["metadata"]["ownerReferences"]:
            ref.update(apiVersion="v1", kind="ConfigMap", name=f"{name}-owner")
        kube.apply(obj)
