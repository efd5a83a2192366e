"""Backup and restore rates of the backup image, next to a plain tar | gzip.

A mailbox of ``--size-mib`` MiB of ``--message-kib`` KiB messages, written like
a tenant's volume (<root>/example.org/alice/Maildir with cur/new/tmp, a few
folders and Dovecot's index files, everything owned by vmail 5000:5000; text of
random words that compresses about as much as mail does), then, side by side:

- the backup image (images/backup) run exactly as the backup and restore Jobs
  run it (tests/images/test_backup_image.py's Runner: the mail user, no
  capability, read-only root, a restore's `prepare` step first, the Job's memory limit) against
  moto's S3 server on loopback with real key checks (tests/s3_support.py):
  a first backup into a new repository, a restore of that snapshot into an
  empty directory, and a second backup with nothing changed (repeated on the
  same repository): its time, the bytes restic says it added and the growth of
  the repository's prefix in the bucket (boto3);
- ``tar -C VOL -cf - . | gzip -1`` (and ``-6``) of the same directory to a
  file, the same again for "nothing changed" (tar has no increments here: it
  pays the full cost again), and ``gzip -dc | tar -x`` of the -1 archive into
  an empty directory.

Every measurement runs ``--repeats`` times, interleaved; the table gives the
median and the range. MB = 10^6 bytes. The page cache is warm unless ``--cold``
(which drops it before each measurement: it slows everything on the machine).

    python -m bench.backup [--size-mib 1024] [--message-kib 10] [--repeats 3] [--cold]

Prints a markdown table and writes bench/results/backup-<time>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from vpes_operator.settings import OperatorSettings

from bench.backup_table import table
from bench.maildir import Mailbox, make_mailbox
from tests.images.tenant import build_images, podman
from tests.images.test_backup_image import Runner
from tests.s3_support import S3Server

RESULTS = Path(__file__).resolve().parent / "results"
VMAIL = 5000
MB = 1_000_000
MIB = 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")
TIMEOUT = 3600.0


# Folder → share of the messages (INBOX is the Maildir itself).
def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine (every core; other users' work too)."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / TICK


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def drop_caches() -> None:
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as e:
        print(f"(could not drop caches: {e})", file=sys.stderr)


@dataclass
class Sample:
    seconds: float
    moto_cpu: float
    machine_cpu: float
    tool_cpu: float | None = None  # restic and the script (the Job's cgroup), or tar and gzip
    peak_mib: float | None = None  # the Job container's peak anonymous memory + tmpfs
    written: int | None = None  # bytes written: archive, added to the repository, restored
    bucket: int | None = None  # growth of the repository's prefix in the bucket
    extra: dict[str, Any] = field(default_factory=dict)


class JobCgroup:
    """A parent cgroup for the Job containers (podman --cgroup-parent): their CPU time and
    peak memory, which outlive each --rm container (cgroup v1 charges every ancestor)."""

    ROOT = Path("/sys/fs/cgroup")

    def __init__(self) -> None:
        self.name = f"vpes-bench-backup-{os.getpid()}"
        self.v1 = (self.ROOT / "cpuacct").is_dir()

    def cpu_seconds(self) -> float | None:
        try:
            if self.v1:
                return int((self.ROOT / "cpuacct" / self.name / "cpuacct.usage").read_text()) / 1e9
            stat = (self.ROOT / self.name / "cpu.stat").read_text().split()
            return int(stat[stat.index("usage_usec") + 1]) / 1e6
        except (OSError, ValueError):
            return None

    def memory(self) -> int | None:
        """Anonymous memory + tmpfs (restic's cache in /tmp) of the running Job containers.

        Not the page cache: the limit counts it too but it is reclaimed, and cgroup v1
        hands a dead container's cache to the parent, so the parent's usage says little."""
        path = self.ROOT / "memory" / self.name if self.v1 else self.ROOT / self.name
        keys = ("total_rss", "total_shmem") if self.v1 else ("anon", "shmem")
        try:
            lines = (path / "memory.stat").read_text().splitlines()
        except OSError:
            return None
        fields = dict(line.split() for line in lines)
        return sum(int(fields.get(k, 0)) for k in keys)

    @contextlib.contextmanager
    def peak(self, out: list[int]) -> Iterator[None]:
        """Sample memory() every 0.1 s while the block runs; the highest into `out`."""
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.1):
                now = self.memory()
                if now is not None and (not out or now > out[0]):
                    out[:] = [now]

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def remove(self) -> None:
        for top in [self.ROOT / self.name, *self.ROOT.glob(f"*/{self.name}")]:
            if top.is_dir():
                subs = sorted(
                    (p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
                )
                for path in [*subs, top]:
                    with contextlib.suppress(OSError):
                        path.rmdir()


class Clock:
    """Wall time and CPU (the tool's, moto's, the machine's) around one measurement."""

    def __init__(self, moto_pid: int, cgroup: JobCgroup, cold: bool) -> None:
        self.moto_pid, self.cgroup, self.cold = moto_pid, cgroup, cold

    def run(self, fn: Callable[[], Sample], job: bool = False) -> Sample:
        if self.cold:
            drop_caches()
        job_cpu = self.cgroup.cpu_seconds()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        moto, machine = cpu_seconds(self.moto_pid), machine_cpu_seconds()
        start = time.monotonic()
        peak: list[int] = []
        with self.cgroup.peak(peak) if job else contextlib.nullcontext():
            sample = fn()
        sample.seconds = time.monotonic() - start
        sample.moto_cpu = cpu_seconds(self.moto_pid) - moto
        sample.machine_cpu = machine_cpu_seconds() - machine
        if job:
            after = self.cgroup.cpu_seconds()
            if after is not None:
                sample.tool_cpu = after - (job_cpu or 0.0)
            sample.peak_mib = peak[0] / MIB if peak else None
        else:
            now = resource.getrusage(resource.RUSAGE_CHILDREN)
            sample.tool_cpu = (now.ru_utime + now.ru_stime) - (
                children.ru_utime + children.ru_stime
            )
        return sample


def _k8s_memory(limit: str) -> str:
    """A Kubernetes quantity ("512Mi") as podman's --memory ("512m")."""
    for suffix, unit in (("Ki", "k"), ("Mi", "m"), ("Gi", "g")):
        if limit.endswith(suffix):
            return limit[: -len(suffix)] + unit
    return limit


class JobRunner(Runner):
    """The test's Runner (the Job's container), with the Job's memory limit and region."""

    def __init__(
        self, image: str, s3: S3Server, work: Path, repository: str, cgroup: JobCgroup
    ) -> None:
        super().__init__(image, s3, work, repository)
        self.prefix, self.cgroup = repository, cgroup
        self.memory = _k8s_memory(OperatorSettings().backup_job_memory_limit)

    def command(self, action: str, volume: Path, env: dict[str, str]) -> list[str]:
        env = {"AWS_DEFAULT_REGION": "us-east-1", "RESTIC_CACHE_DIR": "/tmp/restic-cache", **env}
        args = self.args(action, volume, env, None)
        extra = ["--memory", self.memory, "--cgroup-parent", f"/{self.cgroup.name}"]
        return [*args[:-2], *extra, *args[-2:]]

    def job(self, action: str, volume: Path, **env: str) -> dict[str, Any]:
        if action == "restore":
            self.prepare(volume)  # the Job's init container: part of a restore
        done = podman(*self.command(action, volume, env), check=False, timeout=TIMEOUT)
        text = self.last_term.read_text().strip()
        result: dict[str, Any] = json.loads(text) if text else {}
        if done.returncode != 0 or not result.get("ok"):
            raise RuntimeError(f"{action} failed: {result or done.stderr[-2000:]}")
        return result


def prefix_bytes(s3: S3Server, prefix: str) -> int:
    pages = s3.s3().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    return sum(o["Size"] for page in pages for o in page.get("Contents", []))


def delete_prefix(s3: S3Server, prefix: str) -> None:
    keys = s3.keys(prefix)
    client = s3.s3()
    for i in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[i : i + 1000]]
        client.delete_objects(Bucket=s3.bucket, Delete={"Objects": batch, "Quiet": True})


def shell(command: str) -> None:
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True, timeout=TIMEOUT)


def tar_gzip(volume: Path, out: Path, level: int) -> Sample:
    out.unlink(missing_ok=True)
    shell(f"tar -C {volume} -cf - . | gzip -{level} > {out}")
    return Sample(0, 0, 0, written=out.stat().st_size)


def untar(archive: Path, target: Path) -> Sample:
    shell(f"gzip -dc {archive} | tar -C {target} -xf -")
    return Sample(0, 0, 0)


def remove_tree(path: Path) -> None:
    """Untimed: and written out, so that the next measurement does not pay for it."""
    shutil.rmtree(path)
    subprocess.run(["sync"], check=False)


def empty_dir(path: Path) -> Path:
    if path.exists():
        remove_tree(path)
    path.mkdir()
    return path


# --- the run -------------------------------------------------------------------------------


def stats(samples: list[Sample], key: str) -> dict[str, float] | None:
    values = [getattr(s, key) for s in samples if getattr(s, key) is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def row(tool: str, case: str, samples: list[Sample], size: int) -> dict[str, Any]:
    seconds = stats(samples, "seconds")
    assert seconds is not None
    return {
        "tool": tool,
        "case": case,
        "runs": len(samples),
        "seconds": seconds,
        "mb_per_s": {k: size / MB / v for k, v in seconds.items()},
        "written": stats(samples, "written"),
        "bucket": stats(samples, "bucket"),
        "tool_cpu": stats(samples, "tool_cpu"),
        "peak_mib": stats(samples, "peak_mib"),
        "moto_cpu": stats(samples, "moto_cpu"),
        "machine_cpu": stats(samples, "machine_cpu"),
        "samples": [s.__dict__ for s in samples],
    }


def container_start(runner: JobRunner, volume: Path, repeats: int) -> float:
    """The fixed cost of one Job's container: the same flags, /bin/true as entrypoint."""
    cmd = runner.command("backup", volume, {})
    cmd = [*cmd[:-2], "--entrypoint", "/bin/true", cmd[-2]]
    times = []
    for _ in range(max(repeats, 3)):
        start = time.monotonic()
        podman(*cmd, timeout=120)
        times.append(time.monotonic() - start)
    return statistics.median(times)


def run(
    size_mib: int, message_kib: int, repeats: int, cold: bool, levels: list[int]
) -> dict[str, Any]:
    (image,) = build_images("backup")
    version = podman("run", "--rm", "--entrypoint", "restic", image, "version").stdout.strip()
    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "image": image,
        "restic": version,
        "size_mib": size_mib,
        "message_kib": message_kib,
        "repeats": repeats,
        "cold": cold,
    }
    with _workdir() as work:
        print(f"writing a {size_mib} MiB mailbox of {message_kib} KiB messages ...", flush=True)
        start = time.monotonic()
        mailbox = make_mailbox(work / "volume", size_mib, message_kib)
        print(f"  {mailbox.files} files, {mailbox.bytes / MB:.1f} MB in "
              f"{time.monotonic() - start:.0f} s", flush=True)  # fmt: skip
        results["mailbox"] = {"messages": mailbox.messages, "files": mailbox.files,
                              "bytes": mailbox.bytes}  # fmt: skip
        (work / "objects").mkdir()
        (work / "objects" / "server.json").write_text('{"spec": {"plan": "personal"}}')
        s3 = S3Server(work / "s3")
        s3.start()
        cgroup = JobCgroup()
        try:
            assert s3.proc is not None
            clock = Clock(s3.proc.pid, cgroup, cold)
            results["load_before"] = os.getloadavg()[0]
            results["job_memory_limit"] = OperatorSettings().backup_job_memory_limit
            results["rows"] = measure(s3, clock, image, work, mailbox, repeats, levels, results)
            results["load_after"] = os.getloadavg()[0]
            results["moto_peak_rss_mib"] = rss_mib(s3.proc.pid, "VmHWM")
        finally:
            s3.stop()
            cgroup.remove()
    return results


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    """A scratch directory on disk (the mailbox, its restores, the archives), always removed."""
    path = Path(tempfile.mkdtemp(prefix="vpes-bench-backup-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def measure(
    s3: S3Server,
    clock: Clock,
    image: str,
    work: Path,
    mailbox: Mailbox,
    repeats: int,
    levels: list[int],
    results: dict[str, Any],
) -> list[dict[str, Any]]:
    volume, size = mailbox.root, mailbox.bytes
    tags = "vpes,trigger=manual"
    runners = [JobRunner(image, s3, work, f"vpes/bench/r{i}", clock.cgroup) for i in range(repeats)]
    results["container_start_s"] = container_start(runners[0], volume, repeats)
    first: list[Sample] = []
    restores: list[Sample] = []
    archives: dict[int, list[Sample]] = {level: [] for level in levels}
    extracts: list[Sample] = []
    archive = work / "mail.tar.gz"

    def backup(runner: JobRunner, **env: str) -> Sample:
        before = prefix_bytes(s3, runner.prefix)
        sample = clock.run(partial(_backup, runner, volume, env), job=True)
        sample.bucket = prefix_bytes(s3, runner.prefix) - before
        return sample

    for i, runner in enumerate(runners):
        print(f"repeat {i + 1}/{repeats}: first backup ...", flush=True)
        first.append(backup(runner, VPES_INIT="1", VPES_TAGS=tags))
        snapshot = first[-1].extra["snapshot"]
        print(f"repeat {i + 1}/{repeats}: restore ...", flush=True)
        target = empty_dir(work / "restored")
        restores.append(clock.run(partial(_restore, runner, target, snapshot, mailbox), job=True))
        remove_tree(target)
        if i > 0:  # only the first repository is kept (for the second backups): moto's memory
            delete_prefix(s3, runner.prefix)
        for level in levels:
            print(f"repeat {i + 1}/{repeats}: tar | gzip -{level} ...", flush=True)
            archives[level].append(clock.run(partial(tar_gzip, volume, archive, level)))
        if 1 not in levels:
            tar_gzip(volume, archive, 1)
        print(f"repeat {i + 1}/{repeats}: gzip -dc | tar -x ...", flush=True)
        target = empty_dir(work / "extracted")
        extracts.append(clock.run(partial(untar, archive, target)))
        remove_tree(target)
    config = runners[0].restic("cat", "config")
    if config.returncode == 0:
        results["repository_version"] = json.loads(config.stdout).get("version")
    again: list[Sample] = []
    tar_again: list[Sample] = []
    for i in range(repeats):
        print(f"repeat {i + 1}/{repeats}: backup again, nothing changed ...", flush=True)
        again.append(backup(runners[0], VPES_TAGS=tags))
        print(f"repeat {i + 1}/{repeats}: tar | gzip -1 again ...", flush=True)
        tar_again.append(clock.run(partial(tar_gzip, volume, archive, 1)))
    archive.unlink(missing_ok=True)
    results["repository_bytes"] = prefix_bytes(s3, runners[0].prefix)
    rows = [
        row("vpes-backup (restic)", "backup, first (new repository)", first, size),
        row("vpes-backup (restic)", "restore into an empty directory", restores, size),
        row("vpes-backup (restic)", "backup again, nothing changed", again, size),
    ]
    rows += [row(f"tar | gzip -{lv}", "archive to a file", archives[lv], size) for lv in levels]
    rows.append(row("gzip -dc | tar -x", "extract (-1 archive) into an empty directory",
                    extracts, size))  # fmt: skip
    rows.append(row("tar | gzip -1", "archive again, nothing changed", tar_again, size))
    return rows


def _backup(runner: JobRunner, volume: Path, env: dict[str, str]) -> Sample:
    result = runner.job("backup", volume, **env)
    return Sample(0, 0, 0, written=result["addedBytes"], extra=result)


def _restore(runner: JobRunner, target: Path, snapshot: str, mailbox: Mailbox) -> Sample:
    result = runner.job("restore", target, VPES_SNAPSHOT=snapshot)
    if (result["files"], result["bytes"] >= mailbox.bytes) != (mailbox.files, True):
        raise RuntimeError(f"restore gave back {result}, not {mailbox.files} files")
    return Sample(0, 0, 0, written=result["bytes"], extra=result)


# --- the table -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024, help="mailbox size")
    parser.add_argument("--message-kib", type=int, default=10, help="size of one message")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--gzip-levels", default="1,6", help="tar | gzip levels to time")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before each run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    levels = [int(x) for x in args.gzip_levels.split(",") if x]
    results = run(args.size_mib, args.message_kib, max(args.repeats, 1), args.cold, levels)
    text = table(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"backup-{stamp}.json"
    out.write_text(json.dumps({**results, "table": text}, indent=1) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
