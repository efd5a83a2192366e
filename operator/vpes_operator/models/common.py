"""Types shared by every vpes custom resource: naming, patterns, conditions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.alias_generators import to_camel

# A DNS name made of A-labels (IDNA-encoded once, at the edge): lowercase
# letters, digits and hyphens, labels of 1..63, at least two labels, no
# trailing dot. Unicode names are refused here: the panel encodes them.
DOMAIN_BODY = r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+(xn--[a-z0-9-]{1,59}|[a-z]{2,63})"
DOMAIN_PATTERN = rf"^{DOMAIN_BODY}$"
# The local part we accept: dot-atoms of the usual safe characters. Quoted
# local parts, '%' and '!' are refused on purpose (relay tricks).
LOCAL_PART_PATTERN = r"[a-z0-9#$&'*+/=?^_`{|}~-]+(\.[a-z0-9#$&'*+/=?^_`{|}~-]+)*"
LOCAL_PART_ONLY_PATTERN = rf"^{LOCAL_PART_PATTERN}$"
ADDRESS_PATTERN = rf"^{LOCAL_PART_PATTERN}@{DOMAIN_BODY}$"
# A mailbox address is also a Dovecot login and a directory name, and '+'
# starts a detail (plus-addressing): letters, digits, '.', '_' and '-' only.
MAILBOX_LOCAL_PATTERN = r"[a-z0-9]+([._-][a-z0-9]+)*"
MAILBOX_ADDRESS_PATTERN = rf"^{MAILBOX_LOCAL_PATTERN}@{DOMAIN_BODY}$"
# An alias: a bare local part (that name in every domain) or a full address.
ALIAS_PATTERN = rf"^{LOCAL_PART_PATTERN}(@{DOMAIN_BODY})?$"
# The schemas hold Go RE2 patterns (no look-arounds); lengths are maxLength.
# A Kubernetes object name (DNS-1123 subdomain, kept to a label so it can
# prefix child names).
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# One DNS label (Kubernetes names and namespaces are made of these), unanchored.
LABEL_PATTERN = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
# A Kubernetes resource quantity, e.g. 500m, 64Mi, 5Gi.
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"
BYTES_PATTERN = r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$"
# A size in bytes written as a quantity, e.g. 5Gi: a field's type, given its default
# and description by the field.
ByteSize = Annotated[str, StringConstraints(pattern=BYTES_PATTERN, max_length=32)]


class Model(BaseModel):
    """Base of every spec/status model: camelCase on the wire, no unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=True,
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class View(BaseModel):
    """Base of a typed view of an object as the API server returned it: parsed once, where
    it enters the operator; camelCase on the wire; what the operator does not read is
    ignored (a view, not a schema: the CRDs come from the `Model`s)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
    # The kind a view of a whole object reads (`Kube.read` asks for it).
    API_VERSION: ClassVar[str] = ""
    KIND: ClassVar[str] = ""

    @field_validator("*", mode="before")
    @classmethod
    def _null_is_unset(cls, value: Any, info: Any) -> Any:
        """A JSON null reads as the field's default (Kubernetes omits or nulls alike)."""
        if value is None:
            field = cls.model_fields[info.field_name]
            if not field.is_required():
                return field.get_default(call_default_factory=True)
        return value


class OwnerReference(View):
    kind: str = ""
    name: str = ""
    uid: str = ""


class ManagedFieldsEntry(View):
    manager: str = ""
    subresource: str = ""
    time: str = ""


class ObjectMeta(View):
    """The metadata the operator reads of any object."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    generation: int | None = None
    resource_version: str = ""
    creation_timestamp: datetime | None = None
    # Set: the object is being deleted (only its presence is read).
    deletion_timestamp: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)
    owner_references: list[OwnerReference] = Field(default_factory=list)
    managed_fields: list[ManagedFieldsEntry] = Field(default_factory=list)

    def owner_uid(self, kind: str) -> str:
        """The uid of the object's owner of `kind` ("" when it has none)."""
        return next((r.uid for r in self.owner_references if r.kind == kind), "")


class Object(View):
    """A whole object as read: its metadata, and what the view of its kind adds."""

    metadata: ObjectMeta = Field(default_factory=ObjectMeta)


class SecretKeyRef(Model):
    """A key of a Secret in the same namespace."""

    name: str = Field(
        description="Name of the Secret, in the namespace of this object.",
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
    )
    key: str = Field(
        default="password",
        description="Key within the Secret's data.",
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
    )


class ResourceAmounts(Model):
    cpu: str | None = Field(
        default=None,
        description="CPU, as a Kubernetes quantity (e.g. 50m).",
        pattern=QUANTITY_PATTERN,
        max_length=32,
    )
    memory: str | None = Field(
        default=None,
        description="Memory, as a Kubernetes quantity (e.g. 64Mi).",
        pattern=QUANTITY_PATTERN,
        max_length=32,
    )


class ComputeResources(Model):
    """Requests and limits given to a tenant's mail server container."""

    requests: ResourceAmounts = Field(
        default_factory=lambda: ResourceAmounts(cpu="10m", memory="32Mi"),
        description="What the scheduler reserves for the tenant.",
    )
    limits: ResourceAmounts = Field(
        default_factory=lambda: ResourceAmounts(memory="128Mi"),
        description="The most the tenant may use.",
    )


def friendly(message: str) -> dict[str, Any]:
    """json_schema_extra for a pattern whose failure a person should understand.

    The CRD generator turns the pattern into a CEL rule with this message, so
    the API server answers "must be a domain name like example.org" instead of
    quoting a regular expression.
    """
    return {"x-vpes-message": message}


def list_map(*keys: str) -> dict[str, Any]:
    """json_schema_extra of a list merged by keys (a list-map), as Kubernetes merges it."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


def x_validation(rule: str, message: str, *, field_path: str | None = None) -> dict[str, Any]:
    """One CEL rule (x-kubernetes-validations item)."""
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out
