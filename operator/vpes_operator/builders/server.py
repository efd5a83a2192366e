"""Everything one PersonalMailServer becomes, as a list of objects to apply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import render
from ..credentials import Material
from ..models.plan import MailPlanSpec
from ..models.server import PersonalMailServerSpec
from ..quantity import parse_bytes
from ..settings import OperatorSettings
from . import config, network, storage, workload
from .meta import Owner


@dataclass(frozen=True)
class ServerInputs:
    """The inputs of a build: the server, its plan, the platform, and observed facts."""

    owner: Owner
    spec: PersonalMailServerSpec
    plan: MailPlanSpec
    settings: OperatorSettings
    material: Material
    # The size the volume already has: a volume never shrinks.
    current_storage: str | None = None
    # A MailRestore holds the server stopped while it writes the volume.
    restoring: bool = False
    # The shared Rspamd controller's password (settings.antispam_controller_password_file,
    # read by the reconcile); needed when the server trains.
    antispam_password: str = ""
    # The server's own tenant image (naming.ANNOTATION_TENANT_IMAGE); None: the fleet's.
    image: str | None = None


def volume_size(plan_storage: str, current: str | None) -> str:
    if current and parse_bytes(current) > parse_bytes(plan_storage):
        return current
    return plan_storage


def desired_objects(inputs: ServerInputs) -> list[dict[str, Any]]:
    """The server's children in apply order (config and volume before the workload)."""
    owner, spec, plan, settings = inputs.owner, inputs.spec, inputs.plan, inputs.settings
    ctx = render.build_context(owner.name, owner.namespace, spec, plan, settings)
    dedicated = plan.features.dedicated_address
    calendar = plan.features.calendar
    learn_password = ""
    if ctx.antispam.training is not None:
        if not inputs.antispam_password:
            raise render.RenderError(
                "spam training is configured (settings.antispam_controller_url) but the "
                "controller password cannot be read from "
                f"{settings.antispam_controller_password_file or '(no file set)'}"
            )
        learn_password = render.antispam.controller_password(inputs.antispam_password)
    objects = [
        config.config_map(owner, render.render_config(ctx)),
        config.credentials_secret(
            owner,
            inputs.material,
            render.render_passwd(ctx, inputs.material.password_hashes),
            ctx.relay_host,
            learn_password,
        ),
        storage.volume_claim(
            owner,
            volume_size(plan.storage, inputs.current_storage),
            plan.storage_class_name or settings.storage_class_name,
        ),
        network.service(owner, calendar=calendar),
        network.network_policy(
            owner,
            settings,
            dedicated_address=dedicated,
            training=ctx.antispam.training is not None,
            calendar=calendar,
        ),
        workload.statefulset(
            owner,
            plan,
            settings,
            suspended=spec.suspended or inputs.restoring,
            image=inputs.image,
        ),
    ]
    if dedicated:
        objects.insert(4, network.public_service(owner, settings))
    if inputs.material.generated_passwords:
        # Before the hashes: a reconcile cut short in between leaves a shown password
        # that the next one hashes (credentials.gather), never a hash nobody can use.
        objects.insert(
            1, config.initial_passwords_secret(owner, inputs.material.generated_passwords)
        )
    return objects
