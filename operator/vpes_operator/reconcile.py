"""Reconcile one PersonalMailServer: read, build, apply, report.

Handlers call into this module; it is the only place that strings the pure
builders and the API client together.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from . import credentials, limits, naming, outbound, rollout, status, watched
from .builders import ServerInputs, desired_objects
from .builders.meta import Owner, owner_of
from .clients import access
from .clients.kube import ApiError, Kube
from .clients.status import update_server_status
from .conditions import Cond, Event, find
from .dns.records import served_mail_host
from .edge import relay
from .edge.webmail import allowed as webmail_allowed
from .errors import ConfigError, ReconcileError, WaitingError
from .mailhost import sells_dedicated
from .models.conditions import Reason
from .models.kube import PersistentVolumeClaim, Secret, StatefulSet
from .models.plan import MailPlanSpec, PlanJSON
from .models.server import (
    Endpoints,
    PersonalMailServer,
    PersonalMailServerSpec,
    PersonalMailServerStatus,
    Usage,
)
from .podstate import UNSEEN, Blocker, Unseen
from .render import RenderError
from .settings import OperatorSettings
from .storage import Limits
from .usage import limits as storage_limits
from .usage import spec_usage

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a reconcile did: the new status and the events its transitions deserve."""

    status: PersonalMailServerStatus
    events: list[Event]
    error: ReconcileError | None = None


def _decode(secret: Secret | None) -> dict[str, str]:
    if secret is None:
        return {}
    return {k: base64.b64decode(v).decode() for k, v in secret.data.items()}


def _secret_reader(kube: Kube, namespace: str) -> credentials.SecretReader:
    def read(name: str, key: str) -> tuple[str, str] | None:
        secret = kube.read(Secret, namespace, name)
        if secret is None:
            return None
        raw = secret.data.get(key)
        if raw is None:
            return None
        return base64.b64decode(raw).decode(), secret.metadata.resource_version

    return read


def endpoints(
    owner: Owner, settings: OperatorSettings, webmail: bool = True, mail_host: str | None = None
) -> Endpoints:
    """Where the customer's clients go: the edge's hosts, or the server's own mail host
    where it is served (`dns.records.served_mail_host`); the webmail address only where
    the plan has webmail and the platform runs one (VPES_WEBMAIL_URL set)."""
    return Endpoints(
        imap_host=mail_host or settings.imap_host,
        smtp_host=mail_host or settings.smtp_host,
        service=f"{naming.service(owner.name)}.{owner.namespace}.svc",
        webmail_url=(settings.webmail_url or None) if webmail else None,
        panel_url=settings.panel_url,
    )


def _mail_host(server: PersonalMailServer, plan: PlanJSON | None) -> str | None:
    """The server's own mail host where its plan serves it (None: the edge's hosts)."""
    host = server.spec.get("mailHost")
    return served_mail_host(host if isinstance(host, str) else None, sells_dedicated(plan))


def parse_plan(name: str, raw: PlanJSON | None) -> MailPlanSpec:
    if raw is None:
        raise ConfigError(
            Reason.PLAN_NOT_FOUND,
            f"MailPlan {name!r} does not exist: create it, or set spec.plan to an existing "
            "plan (kubectl get mailplans)",
        )
    try:
        return MailPlanSpec.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(Reason.INVALID_PLAN, f"MailPlan {name!r} is invalid: {e}") from e


def _material(
    kube: Kube, settings: OperatorSettings, spec: PersonalMailServerSpec, owner: Owner
) -> tuple[credentials.Material, WaitingError | None]:
    """The server's secret material, and what it still waits for (a password Secret)."""
    stored = kube.read(Secret, owner.namespace, naming.credentials_secret(owner.name))
    shown = _shown_passwords(kube, owner)
    waiting: WaitingError | None = None
    try:
        material = credentials.gather(
            spec,
            _decode(stored),
            _secret_reader(kube, owner.namespace),
            service_host=f"{naming.service(owner.name)}.{owner.namespace}.svc",
            bcrypt_rounds=settings.bcrypt_rounds,
            dkim_bits=settings.dkim_key_bits,
            dkim_ed25519=settings.dkim_ed25519,
            shown=shown,
        )
    except credentials.MissingPasswordsError as e:
        material, waiting = e.material, e
    _keep_shown_passwords(shown, material)
    return material, waiting


def _shown_passwords(kube: Kube, owner: Owner) -> dict[str, str]:
    """The generated passwords the initial-passwords Secret shows (until it is deleted)."""
    shown = kube.read(Secret, owner.namespace, naming.initial_passwords_secret(owner.name))
    try:
        old = json.loads(_decode(shown).get("passwords.json") or "{}")
    except json.JSONDecodeError:
        return {}
    return {str(a): str(p) for a, p in old.items()} if isinstance(old, dict) else {}


def _keep_shown_passwords(shown: dict[str, str], material: credentials.Material) -> None:
    """Generated passwords are shown once: keep showing the ones still unread (their
    Secret not deleted), drop those of removed mailboxes."""
    keep = {
        a: p for a, p in shown.items() if material.password_sources.get(a) == credentials.GENERATED
    }
    material.generated_passwords = {**keep, **material.generated_passwords}


def antispam_password(settings: OperatorSettings) -> str:
    """The shared Rspamd controller's password, read afresh (a mounted Secret the
    kubelet updates); "" when training is not configured or the file cannot be
    read (the build then says which file)."""
    if not settings.antispam_controller_url or not settings.antispam_controller_password_file:
        return ""
    try:
        return Path(settings.antispam_controller_password_file).read_text().strip()
    except OSError:
        return ""


def _replace_stuck_pods(kube: Kube, inputs: ServerInputs) -> None:
    """The forced rollback a StatefulSet does not do (rollout.py). Only looked for while
    the StatefulSet has no ready pod: a stuck pod is never ready."""
    owner = inputs.owner
    image = inputs.image or inputs.settings.tenant_image
    for pod in rollout.replace_stuck(kube, owner.namespace, owner.name, image):
        log.info(
            "%s/%s: pod %s replaced: not ready, on another image", owner.namespace, owner.name, pod
        )


def apply_server(
    kube: Kube,
    settings: OperatorSettings,
    server: PersonalMailServer,
    plan_spec: PlanJSON | None,
) -> None:
    """Build and apply every child of the server."""
    try:
        spec = server.parsed_spec()
    except ValidationError as e:
        raise ConfigError(Reason.INVALID_SPEC, f"the server's spec is invalid: {e}") from e
    plan = parse_plan(spec.plan, plan_spec)
    limits.check(spec.plan, spec, plan)
    owner = owner_of(server)

    material, waiting = _material(kube, settings, spec, owner)
    if settings.relay_key_shards > 0:
        # The relay's shards follow (the edge maps' loop): one read of the Secret serves both.
        who = f"{owner.namespace}/{owner.name}"
        watched.RELAY.put(who, who, relay.entry(material))
    pvc = kube.read(PersistentVolumeClaim, owner.namespace, naming.volume_claim(owner.name))
    current_storage = pvc.spec.resources.requests.get("storage") if pvc else None
    inputs = ServerInputs(
        owner=owner,
        spec=spec,
        plan=plan,
        settings=settings,
        material=material,
        current_storage=current_storage,
        restoring=naming.ANNOTATION_RESTORE in server.metadata.annotations,
        antispam_password=antispam_password(settings),
        image=server.metadata.annotations.get(naming.ANNOTATION_TENANT_IMAGE) or None,
    )
    try:
        objects = desired_objects(inputs)
    except RenderError as e:
        raise ConfigError(Reason.INVALID_CONFIGURATION, str(e)) from e
    ready = True
    for obj in objects:
        applied = kube.apply(obj)
        if obj["kind"] == "StatefulSet":
            ready = bool((applied.get("status") or {}).get("readyReplicas"))
    if not (ready or spec.suspended or inputs.restoring):
        _replace_stuck_pods(kube, inputs)
    access.ensure(kube, settings, owner.namespace)
    access.publish_logins(kube, settings, owner.namespace, owner.name, material.password_hashes)
    if waiting is not None:
        raise waiting


def reconcile(
    kube: Kube,
    settings: OperatorSettings,
    server: PersonalMailServer,
    plan_spec: PlanJSON | None,
    now: dt.datetime | None = None,
) -> Outcome:
    """Apply the server and write its status; never raises for a reportable problem."""
    now = now or dt.datetime.now(dt.UTC)
    name, namespace = server.metadata.name, server.metadata.namespace
    error: ReconcileError | None = None
    try:
        apply_server(kube, settings, server, plan_spec)
        provisioned = Cond(
            status.PROVISIONED, True, Reason.APPLIED, "all objects of the server are applied"
        )
    except ReconcileError as e:
        error = e
        provisioned = Cond(status.PROVISIONED, False, e.reason, e.message)
    except ApiError as e:
        if 400 <= e.status < 500 and e.status not in (404, 409, 429):
            error = ConfigError(
                Reason.APPLY_REJECTED, f"the API server refused an object: {e.message}"
            )
        else:
            error = WaitingError(Reason.API_ERROR, f"the API server failed: {e.message}", delay=15)
        provisioned = Cond(status.PROVISIONED, False, error.reason, error.message)

    # The spec's side of the usage (quotas): StorageHealthy's overcommit check
    # follows a spec change at once; the figures measured in the pod are kept.
    usage, reserve = spec_usage(server.spec, plan_spec)

    def workload() -> StatefulSet | None:
        # Read afresh for every attempt: a StatefulSet event may have reported
        # a newer state since the apply, and must not be undone.
        return kube.read(StatefulSet, namespace, naming.statefulset(name))

    outcome = write_status(
        kube,
        namespace,
        name,
        workload,
        now=now,
        provisioned=provisioned,
        endpoints=endpoints(
            owner_of(server),
            settings,
            webmail_allowed(plan_spec),
            _mail_host(server, plan_spec),
        ),
        usage=usage,
        storage_limits=storage_limits(settings, reserve),
        relaying=bool(settings.relay_status_url),
    )
    outcome.error = error
    return outcome


def write_status(
    kube: Kube,
    namespace: str,
    name: str,
    workload: Callable[[], StatefulSet | None],
    *,
    now: dt.datetime,
    provisioned: Cond | None = None,
    endpoints: Endpoints | None = None,
    usage: Usage | None = None,
    storage_limits: Limits | None = None,
    pod: Blocker | Unseen | None = UNSEEN,
    relaying: bool = False,
) -> Outcome:
    """Compute the server's status from what is observed and write it if it changed.
    `relaying`: the edge relay counts outbound mail (a new server gets Deliverable).

    Without `provisioned` (a workload event), a server not reconciled yet is
    left alone: its reconcile writes the first status.
    """

    def mutate(current: PersonalMailServer) -> PersonalMailServerStatus | None:
        before = current.status
        if provisioned is None and find(before.conditions, status.PROVISIONED) is None:
            return None  # not reconciled yet (DNS may have written its conditions first)
        new = status.compute(
            before,
            generation=current.generation,
            sts=workload(),
            suspended=current.suspended,
            restoring=current.metadata.annotations.get(naming.ANNOTATION_RESTORE),
            provisioned=provisioned,
            endpoints=endpoints,
            usage=usage,
            storage_limits=storage_limits,
            now=now,
            pod=pod,
        )
        return outbound.with_relaying(current, new, now) if relaying else new

    written = update_server_status(kube, namespace, name, mutate)
    return Outcome(status=written.after, events=written.events)


def refresh_readiness(
    kube: Kube,
    namespace: str,
    name: str,
    *,
    pod: Blocker | Unseen | None = UNSEEN,
    now: dt.datetime | None = None,
) -> Outcome:
    """Recompute Ready and the phase after the workload or its pod changed (no apply).

    The StatefulSet is read afresh for every attempt, never taken from the event
    that woke us: the watch may lag behind what a reconcile already read, and an
    older state must not undo a newer one (Ready flapping, its events posted twice).
    `pod` is what keeps the pod from running, when a pod event looked.
    """

    def workload() -> StatefulSet | None:
        return kube.read(StatefulSet, namespace, naming.statefulset(name))

    at = now or dt.datetime.now(dt.UTC)
    return write_status(kube, namespace, name, workload, now=at, pod=pod)
