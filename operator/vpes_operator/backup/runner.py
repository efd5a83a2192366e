"""Start a backup or restore Job, tell when it ended and how, clean up after it."""

from __future__ import annotations

from .. import naming
from ..clients.kube import Kube
from ..models.kube import Job, Pod
from ..settings import OperatorSettings
from . import egress, jobs, results
from . import repository as repo
from .access import Access
from .jobs import JobSpec
from .results import JobResult

ACTIONS = (repo.COMPONENT_BACKUP, repo.COMPONENT_RESTORE)


def start(
    kube: Kube,
    settings: OperatorSettings,
    spec: JobSpec,
    access: Access,
) -> None:
    """Apply the Job's NetworkPolicy, its Secret, then the Job (each idempotent: a
    restart re-applies them). The policy comes first, so that the pod never runs
    without it; an S3 endpoint whose addresses cannot be named stops everything
    before anything is made (ConfigError or WaitingError)."""
    kube.apply(egress.network_policy(spec, settings, egress.resolve(settings)))
    kube.apply(jobs.job_secret(spec, settings, access))
    kube.apply(jobs.job(spec, settings))


def outcome(kube: Kube, namespace: str, job_name: str) -> JobResult | None:
    """The Job's result once it ended; None while it runs."""
    job = kube.read(Job, namespace, job_name)
    state = results.job_state(job)
    if state == "Running":
        return None
    if state == "Missing":
        return JobResult(
            ok=False, reason="JobMissing", message=f"the Job {job_name} was deleted before it ended"
        )
    pods = kube.read_list(Pod, namespace, labels=f"job-name={job_name}")
    code, message = results.termination(pods)
    assert job is not None
    result = results.parse(code, message, fallback=results.job_failure_reason(job))
    if state == "Failed" and result.ok:  # e.g. the deadline passed after the result
        return JobResult(ok=False, reason="JobFailed", message=results.job_failure_reason(job))
    return result


def finish(kube: Kube, namespace: str, job_name: str) -> None:
    """Once its result is recorded: the Job's Secret (S3 key, restic key) leaves the
    customer's namespace at once, and the Job goes with its pod (and its NetworkPolicy),
    which would otherwise keep the server's volume from being deleted (PVC protection
    counts it as a user)."""
    kube.delete("v1", "Secret", namespace, repo.job_secret_name(job_name))
    kube.delete("batch/v1", "Job", namespace, job_name, propagation="Background")
    kube.delete("networking.k8s.io/v1", "NetworkPolicy", namespace, job_name)


def busy(
    kube: Kube, namespace: str, server: str, own_job: str, repository: repo.Repository
) -> str | None:
    """Another backup or restore Job that has not ended, of the server (its volume) or
    of the repository (a restore into another server reads it): never two at once."""
    mine = kube.read_list(Job, namespace, labels=f"{naming.LABEL_SERVER}={server}")
    same_repository = kube.read_list(
        Job, None, labels=f"{repo.LABEL_REPOSITORY}={repository.label}"
    )
    for job in [*mine, *same_repository]:
        meta = job.metadata
        if meta.labels.get(naming.LABEL_COMPONENT) not in ACTIONS or meta.name == own_job:
            continue
        if results.job_state(job) == "Running":
            return f"{meta.namespace}/{meta.name}"
    return None
