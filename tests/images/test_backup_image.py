"""The backup image under podman against a real S3-protocol server (moto) on loopback.

The same container the backup and restore Jobs run, with the Job's security
settings (read-only root, every capability dropped but the one it needs), on
a volume written like a tenant's: what goes in comes back byte for byte with
owners and modes; faults end in a result that names them; an interrupted
backup leaves the repository consistent and the previous snapshot intact.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backup_support import s3_server
from tests.s3_support import S3Server

from .tenant import build_images, podman, podman_env

HOST = "tenant-a.alice"
BACKUP_CAPS = "DAC_READ_SEARCH"
RESTORE_CAPS = "CHOWN,DAC_OVERRIDE,FOWNER,FSETID"


@pytest.fixture(scope="module")
def backup_image() -> str:
    return build_images("backup")[0]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    yield from s3_server(tmp_path_factory)


class Runner:
    """`vpes-backup` in a container, as a Job runs it."""

    def __init__(self, image: str, s3: S3Server, work: Path, repository: str) -> None:
        self.image, self.s3, self.work = image, s3, work
        self.url = f"s3:{s3.endpoint}/{s3.bucket}/{repository}"
        self.password = "repository-key-" + os.urandom(6).hex()

    def args(self, action: str, volume: Path, env: dict[str, str], secret: str | None) -> list[str]:
        term = self.work / f"term-{time.monotonic_ns()}"
        term.write_text("")
        self.last_term = term
        caps = BACKUP_CAPS if action == "backup" else RESTORE_CAPS
        mode = "ro" if action == "backup" else "rw"
        base = {
            "RESTIC_REPOSITORY": self.url,
            "RESTIC_PASSWORD": self.password,
            "AWS_ACCESS_KEY_ID": self.s3.access_key_id,
            "AWS_SECRET_ACCESS_KEY": secret or self.s3.secret_access_key,
            "VPES_HOST": HOST,
            **env,
        }
        out = ["run", "--rm", "--network", "host", "--read-only", "--cap-drop", "ALL"]
        out += ["--cap-add", caps, "--security-opt", "no-new-privileges"]
        out += ["--tmpfs", "/tmp", "--tmpfs", "/data", "-v", f"{volume}:/data/mail:{mode}"]
        out += ["-v", f"{term}:/dev/termination-log"]
        objects = self.work / "objects"
        if action == "backup" and objects.is_dir():
            out += ["-v", f"{objects}:/run/vpes/objects:ro"]
        for k, v in base.items():
            out += ["-e", f"{k}={v}"]
        return [*out, self.image, action]

    def run(
        self, action: str, volume: Path, secret: str | None = None, **env: str
    ) -> tuple[int, dict[str, Any]]:
        done = podman(*self.args(action, volume, env, secret), check=False, timeout=300)
        text = self.last_term.read_text().strip()
        assert text, f"no termination message; stderr: {done.stderr[-2000:]}"
        assert len(text.encode()) <= 4096  # the kubelet keeps at most 4 KiB
        return done.returncode, json.loads(text)

    def restic(self, *args: str) -> subprocess.CompletedProcess[str]:
        """restic itself, from the image (for checks the Jobs do not do)."""
        cmd = ["run", "--rm", "--network", "host", "--entrypoint", "restic"]
        for k, v in {
            "RESTIC_REPOSITORY": self.url,
            "RESTIC_PASSWORD": self.password,
            "AWS_ACCESS_KEY_ID": self.s3.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.s3.secret_access_key,
        }.items():
            cmd += ["-e", f"{k}={v}"]
        return podman(*cmd, self.image, "--no-cache", *args, check=False, timeout=300)


def maildir(root: Path, messages: int, size: int = 10_240) -> None:
    """A tenant's volume: vmail-owned maildirs, setgid directories, a Dovecot index."""
    box = root / "example.org" / "alice" / "Maildir"
    for sub in ("cur", "new", "tmp", ".Archive/cur", ".Archive/new", ".Archive/tmp"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    for i in range(messages):
        folder = "cur" if i % 3 else ".Archive/cur"
        body = f"Subject: message {i}\r\n\r\n".encode() + os.urandom(size // 2).hex().encode()
        (box / folder / f"{1700000000 + i}.M{i}P1.host:2,S").write_bytes(body[:size])
    (box / "dovecot.index").write_bytes(os.urandom(4096))
    for path in [root, *root.rglob("*")]:
        os.chown(path, 5000, 5000)
    os.chmod(root, 0o2775)


def tree(root: Path) -> dict[str, tuple[int, int, int, bytes]]:
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if path.is_file() else b""
        out[str(path.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, data)
    return out


@pytest.fixture
def runner(backup_image: str, s3: S3Server, tmp_path: Path) -> Runner:
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / "server.json").write_text('{"spec": {"plan": "personal"}}')
    return Runner(backup_image, s3, tmp_path, f"vpes/t/{tmp_path.name}")


def test_backup_then_restore_gives_back_every_byte_owner_and_mode(
    runner: Runner, tmp_path: Path
) -> None:
    volume, target = tmp_path / "volume", tmp_path / "target"
    volume.mkdir(), target.mkdir()
    maildir(volume, 60)
    code, first = runner.run("backup", volume, VPES_INIT="1", VPES_TAGS="vpes,trigger=manual")
    assert (code, first["ok"]) == (0, True), first
    assert first["files"] >= 61 and first["totalBytes"] > 60 * 10_000
    assert first["snapshots"] == [first["snapshot"]]
    # The snapshot holds the server's objects too.
    dumped = runner.restic("dump", first["snapshot"], "/data/objects/server.json")
    assert json.loads(dumped.stdout) == {"spec": {"plan": "personal"}}

    code, restored = runner.run("restore", target, VPES_SNAPSHOT=first["snapshot"])
    assert (code, restored["ok"]) == (0, True), restored
    assert tree(target) == tree(volume)

    # Nothing changed: the second backup adds next to nothing.
    code, second = runner.run("backup", volume, VPES_TAGS="vpes,trigger=manual")
    assert code == 0 and second["addedBytes"] < first["addedBytes"] / 20


def test_a_restore_never_overwrites_mail_unless_asked(runner: Runner, tmp_path: Path) -> None:
    volume, target = tmp_path / "volume", tmp_path / "target"
    volume.mkdir(), target.mkdir()
    maildir(volume, 5)
    code, snap = runner.run("backup", volume, VPES_INIT="1")
    assert code == 0, snap
    (target / "newer-mail").write_text("written after the backup")
    code, refused = runner.run("restore", target, VPES_SNAPSHOT=snap["snapshot"])
    assert (code, refused["reason"]) == (1, "VolumeNotEmpty")
    assert "overwrite: true" in refused["message"]
    assert (target / "newer-mail").read_text() == "written after the backup"
    code, done = runner.run("restore", target, VPES_SNAPSHOT=snap["snapshot"], VPES_OVERWRITE="1")
    assert code == 0, done
    assert not (target / "newer-mail").exists() and tree(target) == tree(volume)


def test_faults_are_named(runner: Runner, s3: S3Server, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    maildir(volume, 3)
    code, bad = runner.run("backup", volume, secret="wrong-secret", VPES_INIT="1")
    assert (code, bad["reason"]) == (1, "S3CredentialsRejected"), bad
    assert s3.keys(runner.url.split(f"{s3.bucket}/", 1)[1]) == []  # nothing was written
    code, _ = runner.run("backup", volume, VPES_INIT="1")
    assert code == 0
    code, missing = runner.run("restore", tmp_path / "volume", VPES_SNAPSHOT="deadbeef")
    assert (code, missing["reason"]) == (1, "SnapshotNotFound")
    runner.password = "another-key"
    code, wrong = runner.run("backup", volume)
    assert (code, wrong["reason"]) == (1, "WrongPassword")


def test_a_corrupted_repository_fails_the_restore_and_says_so(
    runner: Runner, s3: S3Server, tmp_path: Path
) -> None:
    volume, target = tmp_path / "volume", tmp_path / "target"
    volume.mkdir(), target.mkdir()
    maildir(volume, 20)
    code, snap = runner.run("backup", volume, VPES_INIT="1")
    assert code == 0
    prefix = runner.url.split(f"{s3.bucket}/", 1)[1]
    for key in s3.keys(f"{prefix}/data/"):
        s3.s3().put_object(Bucket=s3.bucket, Key=key, Body=os.urandom(2048))
    code, failed = runner.run("restore", target, VPES_SNAPSHOT=snap["snapshot"])
    assert (code, failed["ok"], failed["reason"]) == (1, False, "RestoreFailed"), failed
    assert "restic restore failed" in failed["message"]


def test_a_failed_overwrite_restore_puts_the_previous_mail_back(
    runner: Runner, s3: S3Server, tmp_path: Path
) -> None:
    volume, target = tmp_path / "volume", tmp_path / "target"
    volume.mkdir(), target.mkdir()
    maildir(volume, 10)
    code, snap = runner.run("backup", volume, VPES_INIT="1")
    assert code == 0, snap
    maildir(target, 4)
    (target / "newer-mail").write_text("written after the backup")
    before = tree(target)
    prefix = runner.url.split(f"{s3.bucket}/", 1)[1]
    for key in s3.keys(f"{prefix}/data/"):
        s3.s3().put_object(Bucket=s3.bucket, Key=key, Body=os.urandom(2048))
    code, failed = runner.run("restore", target, VPES_SNAPSHOT=snap["snapshot"], VPES_OVERWRITE="1")
    assert (code, failed["reason"]) == (1, "RestoreFailed"), failed
    assert "back in place" in failed["message"]
    assert tree(target) == before, "the mail the volume held is not what it was"


@pytest.mark.parametrize("state", [".vpes-restore-moving", ".vpes-restore-previous"])
def test_an_interrupted_overwrite_restore_is_undone_by_the_next_run(
    runner: Runner, tmp_path: Path, state: str
) -> None:
    """A restore killed while setting the mail aside, or while restoring: the next
    run puts the previous mail back before anything else (here it then refuses,
    as no overwrite is asked for)."""
    volume, target = tmp_path / "volume", tmp_path / "target"
    volume.mkdir(), target.mkdir()
    maildir(volume, 3)
    code, snap = runner.run("backup", volume, VPES_INIT="1")
    assert code == 0, snap
    maildir(target, 6)
    before = tree(target)
    aside = target / state
    aside.mkdir()
    moved = sorted(p for p in target.iterdir() if p != aside)
    if state.endswith("moving"):
        moved = moved[: max(1, len(moved) // 2)]  # cut short half-way
    for entry in moved:
        entry.rename(aside / entry.name)
    if state.endswith("previous"):
        (target / "example.org").mkdir()  # what a restore had written before it died
        (target / "example.org" / "partial").write_text("half a message")
    code, refused = runner.run("restore", target, VPES_SNAPSHOT=snap["snapshot"])
    assert (code, refused["reason"]) == (1, "VolumeNotEmpty"), refused
    assert tree(target) == before


def test_an_interrupted_backup_leaves_the_repository_consistent(
    runner: Runner, s3: S3Server, tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    maildir(volume, 10)
    code, good = runner.run("backup", volume, VPES_INIT="1")
    assert code == 0
    # Much more mail, then the backup is killed while it uploads.
    big = volume / "example.org" / "alice" / "Maildir" / "cur"
    for i in range(40):
        (big / f"big-{i}:2,").write_bytes(os.urandom(4 * 2**20))
    name = f"interrupted-{tmp_path.name}"[:60]
    args = runner.args("backup", volume, {}, None)
    args.insert(2, f"--name={name}")
    proc = subprocess.Popen(["podman", *args], env=podman_env(), stdout=subprocess.DEVNULL)
    prefix = runner.url.split(f"{s3.bucket}/", 1)[1]
    before = len(s3.keys(f"{prefix}/data/"))
    deadline = time.monotonic() + 120
    while len(s3.keys(f"{prefix}/data/")) <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    podman("kill", name, check=False)
    proc.wait(timeout=60)
    assert len(s3.keys(f"{prefix}/data/")) > before, "the backup was not caught mid-upload"
    assert len(s3.keys(f"{prefix}/snapshots/")) == 1  # no half snapshot

    check = runner.restic("check")
    assert check.returncode == 0 or "already locked" in check.stderr, check.stderr
    code, after = runner.run("backup", volume)  # removes the dead run's lock
    assert code == 0, after
    assert runner.restic("check").returncode == 0
    restored = tmp_path / "restored"
    restored.mkdir()
    code, out = runner.run("restore", restored, VPES_SNAPSHOT=good["snapshot"])
    assert code == 0, out  # the previous good backup is still whole
    shutil.rmtree(restored)


def test_retention_forgets_only_scheduled_snapshots_and_keeps_the_newest(
    runner: Runner, tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    maildir(volume, 5)
    code, manual = runner.run("backup", volume, VPES_INIT="1", VPES_TAGS="vpes,trigger=manual")
    assert code == 0, manual
    keep = {"VPES_KEEP_DAILY": "1", "VPES_KEEP_WEEKLY": "0", "VPES_KEEP_MONTHLY": "0"}
    scheduled = []
    for i in range(3):
        (volume / f"new-{i}").write_text(f"mail {i}")
        code, out = runner.run(
            "backup",
            volume,
            VPES_TAGS="vpes,trigger=schedule",
            VPES_FORGET_TAG="trigger=schedule",
            **keep,
        )
        assert code == 0 and out["retention"] == "ok", out
        scheduled.append(out["snapshot"])
    # Three scheduled snapshots of one day: the day keeps one, the newest; the
    # manual snapshot is not the plan's to forget.
    assert sorted(out["snapshots"]) == sorted([manual["snapshot"], scheduled[-1]])
    assert runner.restic("check").returncode == 0
