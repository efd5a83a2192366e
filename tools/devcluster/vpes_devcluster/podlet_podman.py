"""The podlet's container runtime: rootful podman, driven through its command line.

Every container the podlet starts carries the labels ``vpes.io/podlet=<node>`` and
``vpes.io/podlet-instance=<id>``, the id a hash of the node name and the podlet's state
directory: one ``podman ps`` per poll sees all of the podlet's containers, a restarted
podlet (same node, same state directory) finds and removes what an earlier one left
behind, and podlets of other clusters on the same machine (which may well also have a
node ``podlet-0``) are left alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpes_devcluster import binaries
from vpes_devcluster.errors import ClusterError

log = logging.getLogger("vpes_devcluster.podlet")

NODE_LABEL = "vpes.io/podlet"
INSTANCE_LABEL = "vpes.io/podlet-instance"
POD_UID_LABEL = "vpes.io/pod-uid"
CONTAINER_LABEL = "vpes.io/container"


class PodmanError(RuntimeError):
    """A podman command failed; the message holds its stderr (never the environment)."""


@dataclass(frozen=True)
class Seen:
    """One container as ``podman ps`` lists it."""

    id: str
    state: str  # created, running, exited, stopped, ...

    @property
    def exited(self) -> bool:
        return self.state in ("exited", "stopped", "dead")


@dataclass(frozen=True)
class Details:
    """What ``podman inspect`` says about one container."""

    id: str
    running: bool
    exit_code: int
    oom_killed: bool
    started_at: str
    finished_at: str
    image_id: str
    error: str


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$")


def rfc3339(stamp: str) -> str:
    """``2026-12-01T21:41:41.571853774+01:00`` (podman) → ``2026-12-01T20:41:41Z``
    (Kubernetes); now for a zero or unreadable time."""
    match = _STAMP.match(stamp.strip())
    if not match or stamp.startswith("0001-"):
        return now()
    offset = "+00:00" if match.group(2) == "Z" else match.group(2)
    moment = dt.datetime.fromisoformat(match.group(1) + offset)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def instance_id(node: str, state_dir: Path) -> str:
    """The value of the instance label of the podlet of ``node`` using ``state_dir``."""
    key = f"{node}\0{state_dir.resolve()}".encode()
    return hashlib.sha256(key).hexdigest()[:16]


def default_env() -> dict[str, str]:
    """The environment podman runs in: ``CONTAINERS_CONF`` defaults to the checkout's
    ``images/containers.conf`` (runc and explicit ulimits, which these machines need)."""
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env:
        try:
            conf = binaries.repo_root() / "images" / "containers.conf"
        except ClusterError:
            return env
        if conf.is_file():
            env["CONTAINERS_CONF"] = str(conf)
    return env


class Podman:
    """The few podman commands the podlet needs."""

    def __init__(self, env: Mapping[str, str] | None = None, binary: str = "podman") -> None:
        self.env = dict(env) if env is not None else default_env()
        self.binary = binary

    def _run(
        self,
        args: Sequence[str],
        *,
        timeout: float = 120.0,
        check: bool = True,
        env_extra: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **(env_extra or {})}
        try:
            proc = subprocess.run(
                [self.binary, *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                check=False,
                start_new_session=True,  # a signal to the podlet's group is not for podman
            )
        except subprocess.TimeoutExpired as exc:
            raise PodmanError(f"podman {args[0]} timed out after {timeout:g} s") from exc
        if check and proc.returncode != 0:
            raise PodmanError(f"podman {args[0]} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def image_id(self, image: str) -> str | None:
        """The id of ``image`` if it exists locally, else None."""
        proc = self._run(["image", "inspect", "--format", "{{.Id}}", image], check=False)
        return proc.stdout.strip() or None if proc.returncode == 0 else None

    def run(self, argv: Sequence[str], env_extra: Mapping[str, str] | None = None) -> str:
        """``podman run -d ARGV``: the new container's id. ``env_extra`` is the
        environment of the podman process (for ``--env NAME`` without a value)."""
        proc = self._run(["run", "--detach", *argv], env_extra=env_extra, timeout=180.0)
        return proc.stdout.strip().splitlines()[-1]

    def ps(self, label: str) -> dict[str, Seen]:
        """Every container (running or not) with ``label`` (``name=value``)."""
        proc = self._run(["ps", "--all", "--filter", f"label={label}", "--format", "json"])
        rows: list[dict[str, Any]] = json.loads(proc.stdout or "[]") or []
        return {str(r["Id"]): Seen(str(r["Id"]), str(r.get("State", ""))) for r in rows}

    def inspect(self, cid: str) -> Details | None:
        proc = self._run(["container", "inspect", cid], check=False)
        if proc.returncode != 0:
            return None
        docs: list[dict[str, Any]] = json.loads(proc.stdout or "[]") or []
        if not docs:
            return None
        state = docs[0].get("State") or {}
        return Details(
            id=cid,
            running=bool(state.get("Running")),
            exit_code=int(state.get("ExitCode") or 0),
            oom_killed=bool(state.get("OOMKilled")),
            started_at=rfc3339(str(state.get("StartedAt") or "")),
            finished_at=rfc3339(str(state.get("FinishedAt") or "")),
            image_id=str(docs[0].get("Image") or ""),
            error=str(state.get("Error") or ""),
        )

    def stop(self, cids: Sequence[str], grace: int) -> None:
        """SIGTERM (the image's stop signal), SIGKILL after ``grace`` seconds."""
        if cids:
            self._run(["stop", "--time", str(grace), *cids], check=False, timeout=grace + 60.0)

    def remove(self, cids: Sequence[str], grace: int = 1) -> None:
        """Stop (``grace`` seconds) and remove ``cids`` and their anonymous volumes."""
        if cids:
            self._run(
                ["rm", "--force", "--volumes", "--time", str(grace), *cids],
                check=False,
                timeout=grace + 60.0,
            )

    def of_instance(self, instance: str) -> list[str]:
        """The ids of every container the podlet ``instance`` started."""
        return list(self.ps(f"{INSTANCE_LABEL}={instance}"))

    def of_pod(self, uid: str) -> list[str]:
        return list(self.ps(f"{POD_UID_LABEL}={uid}"))

    def exec(self, cid: str, command: Sequence[str], timeout: float) -> int:
        """Exit code of ``command`` run in ``cid`` (-1 when it timed out)."""
        try:
            proc = self._run(["exec", cid, *command], check=False, timeout=timeout)
        except PodmanError:
            return -1
        return proc.returncode

    def logs_tail(self, cid: str, lines: int = 80, limit: int = 2048) -> str:
        proc = self._run(["logs", "--tail", str(lines), cid], check=False)
        text = proc.stdout + proc.stderr
        return text[-limit:]


class Poller:
    """A thread that lists the node's containers every ``interval`` seconds and then
    sets every listening event; :attr:`snapshot` is the last listing and :attr:`taken`
    the monotonic time at which it was asked for."""

    def __init__(
        self, podman: Podman, instance: str, interval: float, stop: threading.Event
    ) -> None:
        name = f"podlet {instance} poller"
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.podman = podman
        self.instance = instance
        self.interval = interval
        self.stop = stop
        self.snapshot: dict[str, Seen] = {}
        self.taken = 0.0
        self.listeners: list[threading.Event] = []
        self._lock = threading.Lock()

    def listen(self, event: threading.Event) -> None:
        with self._lock:
            self.listeners.append(event)

    def forget(self, event: threading.Event) -> None:
        with self._lock:
            if event in self.listeners:
                self.listeners.remove(event)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                snapshot = self.podman.ps(f"{INSTANCE_LABEL}={self.instance}")
            except (PodmanError, ValueError) as exc:
                log.warning("listing the containers of podlet %s: %s", self.instance, exc)
            else:
                self.snapshot, self.taken = snapshot, began
                with self._lock:
                    listeners = list(self.listeners)
                for event in listeners:
                    event.set()
            self.stop.wait(self.interval)


def termination_file(directory: Path, name: str) -> Path:
    """An empty, world-writable file for a container's termination message."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(b"")
    path.chmod(0o666)
    return path
