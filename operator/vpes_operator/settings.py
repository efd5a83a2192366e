"""Operator settings: what the provider configures (chart values → environment)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ENV_PREFIX = "VPES_"


class OperatorSettings(BaseModel):
    """Platform settings, the third input of every builder besides the PMS and its plan.

    Each field can be set from the environment as VPES_<FIELD_NAME_UPPER>; list
    fields take a comma-separated value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_image: str = Field(default="localhost/vpes-tenant:dev", description="Tenant image.")
    image_pull_policy: str = Field(default="IfNotPresent")
    operator_namespace: str = Field(default="vpes-system")
    field_manager: str = Field(default="vpes-operator")
    # Names the customer's clients use; all served by the shared edge.
    mx_host: str = Field(default="mx.vpes.test", description="The edge's inbound MX name.")
    imap_host: str = Field(default="imap.vpes.test")
    smtp_host: str = Field(default="smtp.vpes.test")
    webmail_url: str = Field(default="https://webmail.vpes.test")
    panel_url: str = Field(default="https://panel.vpes.test")
    # Where tenants send outbound mail (the edge relay); empty: deliver directly.
    relay_host: str = Field(default="")
    # Sources trusted to send a PROXY protocol header / be the edge.
    edge_networks: tuple[str, ...] = Field(default=("10.0.0.0/8",))
    # Pod labels of the edge and of the operator (NetworkPolicy peers).
    edge_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/part-of": "vpes", "vpes.io/component": "edge"}
    )
    operator_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {
            "app.kubernetes.io/part-of": "vpes",
            "vpes.io/component": "operator",
        }
    )
    cluster_dns_namespace: str = Field(default="kube-system")
    # Annotations of a dedicated address's LoadBalancer Service: whatever the
    # provider's cloud needs to send PROXY protocol headers.
    dedicated_service_annotations: dict[str, str] = Field(default_factory=dict)
    bcrypt_rounds: int = Field(default=10, ge=4, le=15)
    dkim_selector: str = Field(default="vpes")
    dkim_key_bits: int = Field(default=2048)
    storage_class_name: str | None = Field(default=None)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None:
                continue
            ann = str(field.annotation)
            if "tuple" in ann:
                values[name] = tuple(v.strip() for v in raw.split(",") if v.strip())
            elif "dict" in ann:
                values[name] = dict(item.split("=", 1) for item in raw.split(",") if "=" in item)
            else:
                values[name] = raw
        return cls.model_validate(values)
