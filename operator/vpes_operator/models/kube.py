"""Typed views of the Kubernetes kinds the operator reads: only the fields it reads.

An object the API server returns is parsed into one of these where it enters
(`Kube.read`, `Kube.read_list`); the code after that reads typed fields.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from .common import Object, View


class ConfigMap(Object):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "ConfigMap"

    data: dict[str, str] = Field(default_factory=dict)


class Secret(Object):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Secret"

    data: dict[str, str] = Field(default_factory=dict)


class StatefulSetSpec(View):
    replicas: int = 1


class StatefulSetStatus(View):
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    observed_generation: int = 0


class StatefulSet(Object):
    API_VERSION: ClassVar[str] = "apps/v1"
    KIND: ClassVar[str] = "StatefulSet"

    spec: StatefulSetSpec = Field(default_factory=StatefulSetSpec)
    status: StatefulSetStatus = Field(default_factory=StatefulSetStatus)


class ClaimResources(View):
    requests: dict[str, str] = Field(default_factory=dict)


class ClaimSpec(View):
    storage_class_name: str | None = None
    resources: ClaimResources = Field(default_factory=ClaimResources)


class ClaimStatus(View):
    phase: str | None = None


class PersistentVolumeClaim(Object):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "PersistentVolumeClaim"

    spec: ClaimSpec = Field(default_factory=ClaimSpec)
    status: ClaimStatus = Field(default_factory=ClaimStatus)


class PodCondition(View):
    """A condition of a Pod or a Job (the same shape)."""

    type: str = ""
    status: str = ""
    reason: str = ""
    message: str = ""


class Waiting(View):
    reason: str | None = None
    message: str | None = None


class Terminated(View):
    exit_code: int | None = None
    message: str = ""
    finished_at: str = ""


class Running(View):
    started_at: str = ""


class ContainerState(View):
    waiting: Waiting | None = None
    running: Running | None = None
    terminated: Terminated | None = None


class ContainerStatus(View):
    name: str = ""
    image: str = ""
    ready: bool = False
    restart_count: int = 0
    state: ContainerState = Field(default_factory=ContainerState)
    last_state: ContainerState = Field(default_factory=ContainerState)


class Container(View):
    name: str = ""
    image: str = ""


class PodSpec(View):
    node_name: str | None = None
    containers: list[Container] = Field(default_factory=list)


class PodStatus(View):
    phase: str | None = None
    conditions: list[PodCondition] = Field(default_factory=list)
    container_statuses: list[ContainerStatus] = Field(default_factory=list)
    pod_ip: str | None = Field(default=None, alias="podIP")


class Pod(Object):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Pod"

    spec: PodSpec = Field(default_factory=PodSpec)
    status: PodStatus = Field(default_factory=PodStatus)


class JobStatus(View):
    conditions: list[PodCondition] = Field(default_factory=list)
    succeeded: int = 0
    failed: int = 0


class Job(Object):
    API_VERSION: ClassVar[str] = "batch/v1"
    KIND: ClassVar[str] = "Job"

    status: JobStatus = Field(default_factory=JobStatus)
