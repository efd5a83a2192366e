"""One pod on a podlet: a thread that makes its volumes, runs its init containers in
order and then its containers, watches them (restarting per ``restartPolicy``, with
a back-off of 0, 1, 2, 4, 8 then 10 s), probes them, refreshes its configMap and secret
volumes, reports its status, and at deletion stops and removes it all and deletes the
pod object (gracePeriodSeconds 0), as the kubelet does at the end of termination."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vpes_devcluster.kube import ApiError, Obj, Rest
from vpes_devcluster.podlet_container import (
    Launch,
    container_name,
    mounts_of,
    run_argv,
    split_env,
)
from vpes_devcluster.podlet_env import ConfigError, Objects, container_env
from vpes_devcluster.podlet_podman import (
    Details,
    Podman,
    PodmanError,
    Poller,
    now,
    termination_file,
)
from vpes_devcluster.podlet_probe import probes_of
from vpes_devcluster.podlet_status import ContainerRun, Transitions, pod_status, read_message
from vpes_devcluster.podlet_volumes import PodVolumes, VolumeError

log = logging.getLogger("vpes_devcluster.podlet")

STRATEGIC_MERGE = "application/strategic-merge-patch+json"
BACKOFF_MAX = 10.0
BACKOFF_RESET = 60.0  # a container that ran this long restarts without delay
RETRY = 2.0  # seconds before a volume or container configuration is tried again
TERMINAL = ("Succeeded", "Failed")


@dataclass(frozen=True)
class Context:
    """What every pod worker of one podlet shares."""

    rest: Rest
    podman: Podman
    poller: Poller
    node: str
    instance: str  # the podlet's instance label (see podlet_podman)
    pods_dir: Path
    api: tuple[str, int]  # where pods reach the API server
    stop: threading.Event
    tick: float
    refresh: float


def grace_of(pod: Obj) -> int:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    for value in (
        meta.get("deletionGracePeriodSeconds"),
        spec.get("terminationGracePeriodSeconds"),
    ):
        if value is not None:
            return int(value)
    return 30


def _restarts(policy: str, init: bool, exit_code: int) -> bool:
    if policy == "Always" and not init:
        return True
    return policy != "Never" and exit_code != 0


class PodWorker:
    """The thread of one pod: :meth:`start`, then :meth:`update` with each newer version
    of the pod, :meth:`terminate` when it is deleted."""

    def __init__(self, ctx: Context, pod: Obj, on_done: Callable[[str], None]) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        self.ctx, self.pod, self.on_done = ctx, pod, on_done
        self.uid = str(meta["uid"])
        self.key = f"{meta['namespace']}/{meta['name']}"
        self.thread = threading.Thread(target=self._run, name=f"pod {self.key}", daemon=True)
        self.policy = str(spec.get("restartPolicy") or "Always")
        self.dir = ctx.pods_dir / self.uid
        self.volumes = PodVolumes(ctx.rest, pod, self.dir / "volumes", ctx.node)
        self.inits = [ContainerRun(c, init=True) for c in spec.get("initContainers") or []]
        self.mains = [ContainerRun(c) for c in spec.get("containers") or []]
        self.wake = threading.Event()
        self.grace: int | None = None
        self.gone = False
        self.finished = (pod.get("status") or {}).get("phase") in TERMINAL
        self.volumes_ready = False
        self.volume_error = ""  # the last one, logged once
        self.transitions = Transitions()
        self.start_time = str((pod.get("status") or {}).get("startTime") or now())
        self.reported: Obj | None = None
        self.next_volume_try = 0.0
        self.next_refresh = 0.0
        if meta.get("deletionTimestamp"):
            self.terminate(grace_of(pod))

    @property
    def runs(self) -> list[ContainerRun]:
        return [*self.inits, *self.mains]

    def update(self, pod: Obj) -> None:
        """A newer version of the pod (from the watch)."""
        self.pod = self.volumes.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.terminate(grace_of(pod))
        self.wake.set()

    def terminate(self, grace: int, gone: bool = False) -> None:
        """Stop the pod (containers get ``grace`` seconds); ``gone``: the object is
        already deleted, so it is not deleted again."""
        self.grace = grace if self.grace is None else min(self.grace, grace)
        self.gone = self.gone or gone
        self.wake.set()

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def _run(self) -> None:
        self.ctx.poller.listen(self.wake)
        try:
            while self.grace is None and not self.ctx.stop.is_set():
                if not self.finished:
                    try:
                        self._step()
                    except Exception:
                        log.exception("pod %s: step failed", self.key)
                self.wake.wait(self.ctx.tick)
                self.wake.clear()
            if self.grace is not None and not self.ctx.stop.is_set():
                self._finish()
        except Exception:
            log.exception("pod %s: termination failed", self.key)
        finally:
            self.ctx.poller.forget(self.wake)
            self.on_done(self.uid)

    # -- one step -----------------------------------------------------------------------

    def _step(self) -> None:
        if not self._volumes():
            self._report()
            return
        self._observe()
        if self._inits_done():
            for run in self.mains:
                self._ensure(run)
            self._probe()
        self._report()

    def _volumes(self) -> bool:
        mono = time.monotonic()
        if self.volumes_ready:
            if mono >= self.next_refresh:
                self.next_refresh = mono + self.ctx.refresh
                for name in self.volumes.refresh():
                    log.info("pod %s: volume %s updated", self.key, name)
            return True
        if mono < self.next_volume_try:
            return False
        try:
            self.volumes.prepare()
        except VolumeError as exc:
            self.next_volume_try = mono + RETRY
            if str(exc) != self.volume_error:
                self.volume_error = str(exc)
                log.info("pod %s: %s", self.key, exc)
            for run in self.runs:
                run.waiting("ContainerCreating", str(exc))
            return False
        self.volumes_ready = True
        self.next_refresh = mono + self.ctx.refresh
        return True

    def _observe(self) -> None:
        snapshot, taken = self.ctx.poller.snapshot, self.ctx.poller.taken
        for run in self.runs:
            if not run.running or run.cid is None or taken <= run.created:
                continue
            seen = snapshot.get(run.cid)
            if seen is not None and not seen.exited:
                continue
            details = self.ctx.podman.inspect(run.cid)
            if details is None or not details.running:
                self._exited(run, details)

    def _exited(self, run: ContainerRun, details: Details | None) -> None:
        cid = str(run.cid)
        message = read_message(run.termination)
        code = details.exit_code if details is not None else 137
        fallback = run.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        if fallback and not message and code != 0:
            message = self.ctx.podman.logs_tail(cid)
        if details is None:
            reason, message = "ContainerStatusUnknown", message or "the container disappeared"
        else:
            reason = "OOMKilled" if details.oom_killed else "Completed" if code == 0 else "Error"
        started = details.started_at if details else run.state["running"]["startedAt"]
        term: Obj = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": details.finished_at if details else now(),
            "containerID": f"podman://{cid}",
        }
        if message:
            term["message"] = message
        run.state, run.probes = {"terminated": term}, {}
        run.dead.append(cid)
        if run.termination is not None:
            run.termination.unlink(missing_ok=True)
        log.info("pod %s: container %s exited %s", self.key, run.name, code)
        if _restarts(self.policy, run.init, code):
            ran = time.monotonic() - run.created
            delay = 0.0 if ran >= BACKOFF_RESET else run.backoff
            run.backoff = 0.0 if ran >= BACKOFF_RESET else min(max(1.0, 2 * delay), BACKOFF_MAX)
            run.last_state, run.next_start = {"terminated": term}, time.monotonic() + delay
            name = self.pod["metadata"]["name"]
            run.waiting(
                "CrashLoopBackOff",
                f"back-off {delay:g}s restarting failed container={run.name} pod={name}",
            )

    def _inits_done(self) -> bool:
        for run in self.inits:
            if run.succeeded:
                continue
            if run.terminated is None:
                self._ensure(run)
            return False
        return True

    def _ensure(self, run: ContainerRun) -> None:
        if run.running or run.terminated is not None or time.monotonic() < run.next_start:
            return
        try:
            self._start(run)
        except (ConfigError, ApiError) as exc:
            run.waiting("CreateContainerConfigError", str(exc))
            run.next_start = time.monotonic() + RETRY
        except PodmanError as exc:
            run.waiting("RunContainerError", str(exc))
            run.next_start = time.monotonic() + max(RETRY, run.backoff)

    def _start(self, run: ContainerRun) -> None:
        podman, spec = self.ctx.podman, run.spec
        image = str(spec.get("image", ""))
        image_id = podman.image_id(image)
        if image_id is None:
            message = f'Container image "{image}" is not present with pull policy of Never'
            run.waiting("ErrImageNeverPull", message)
            run.next_start = time.monotonic() + RETRY
            return
        env = container_env(
            Objects(self.ctx.rest, self.pod["metadata"]["namespace"]),
            self.pod,
            spec,
            self.ctx.node,
            self.ctx.api,
        )
        mounts = mounts_of(spec, self.volumes.volumes, env)
        podman.remove(run.dead, grace=0)
        run.dead.clear()
        name = container_name(self.pod, run.name, run.runs)
        text, multiline = split_env(env)
        env_file = self.dir / "env" / f"{run.name}.env"
        env_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        term = termination_file(self.dir / "termination", f"{run.name}-{run.runs}")
        ctx = self.ctx
        launch = Launch(name, ctx.node, ctx.instance, env_file, sorted(multiline), mounts, term)
        if self.ctx.stop.is_set():
            return
        try:
            cid = podman.run(run_argv(self.pod, spec, env, launch), env_extra=multiline)
        except PodmanError:
            podman.remove([name], grace=0)  # created but not started
            raise
        finally:
            env_file.unlink(missing_ok=True)
        if self.ctx.stop.is_set():  # the podlet's own clean-up may have run already
            podman.remove([cid], grace=0)
            return
        run.cid, run.created, run.image_id, run.termination = cid, time.monotonic(), image_id, term
        run.runs += 1
        run.restarts = run.runs - 1
        run.state = {"running": {"startedAt": now()}}
        run.probes = {} if run.init else probes_of(spec, run.created)
        log.info("pod %s: started container %s (%s)", self.key, run.name, cid[:12])

    def _probe(self) -> None:
        for run in self.mains:
            if not run.running or run.cid is None:
                continue
            startup = run.probes.get("startup")
            if startup is not None and not startup.ok:
                startup.tick(run.spec, self.ctx.podman, run.cid)
                if startup.failed:
                    self._kill(run, "startup")
                continue
            for kind in ("readiness", "liveness"):
                probe = run.probes.get(kind)
                if probe is not None:
                    probe.tick(run.spec, self.ctx.podman, run.cid)
            liveness = run.probes.get("liveness")
            if liveness is not None and liveness.failed:
                self._kill(run, "liveness")

    def _kill(self, run: ContainerRun, kind: str) -> None:
        log.info("pod %s: container %s failed its %s probe; killing it", self.key, run.name, kind)
        run.probes = {}
        self.ctx.podman.stop([str(run.cid)], grace_of(self.pod))

    def _report(self) -> None:
        status = pod_status(
            self.inits,
            self.mains,
            self.policy,
            self.volumes_ready,
            self.start_time,
            self.transitions,
        )
        if status == self.reported:
            return
        meta = self.pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        try:
            self.ctx.rest.request("PATCH", path, {"status": status}, content_type=STRATEGIC_MERGE)
        except ApiError as exc:
            if exc.status == 404:
                self.terminate(0, gone=True)
                return
            raise
        self.reported = status
        if status["phase"] in TERMINAL:
            self.finished = True
            log.info("pod %s: %s", self.key, status["phase"])

    # -- the end ------------------------------------------------------------------------

    def _finish(self) -> None:
        grace = self.grace or 0
        live = [str(run.cid) for run in self.runs if run.running and run.cid]
        log.info("pod %s: stopping %d container(s), grace %d s", self.key, len(live), grace)
        self.ctx.podman.stop(live, grace)
        self.ctx.podman.remove(self.ctx.podman.of_pod(self.uid), grace=0)
        self.cleanup()
        if not self.gone:
            self._delete_pod()

    def cleanup(self) -> None:
        """Remove the pod's directories (its containers are gone)."""
        self.volumes.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _delete_pod(self) -> None:
        meta = self.pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        try:
            self.ctx.rest.request("DELETE", path, body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise
        log.info("pod %s: deleted", self.key)
