"""The backup image under podman against a real S3-protocol server (moto) on loopback.

The same container the backup and restore Jobs run, with the Job's security
settings (the mail user, 5000:5000, no capability, read-only root, no new
privileges; a restore first runs the Job's `prepare` step as root with
CAP_CHOWN alone), on a volume written like a tenant's (root:vmail 2775 at the
top, vmail's mailboxes, root's lost+found, postfix's 0700 queue): the mail
comes back byte for byte with owners and modes, the queue and lost+found stay
out and the server's own queue stays where it is; faults end in a result that
names them; an interrupted backup leaves the repository consistent and the
previous snapshot intact.
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
MAIL_USER = "5000:5000"  # layout.VMAIL_UID/GID: the Job's runAsUser/runAsGroup
POSTFIX = (101, 103)  # any other owner: the tenant's postfix user
# In flight, not kept: the Postfix queue and the learn spool (Junk moves waiting
# to reach the antispam); and root's lost+found.
NOT_MAIL = ("postfix-queue", "learn-spool", "lost+found")


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
        term.chmod(0o666)  # as the kubelet leaves it for a non-root container
        mode = "ro" if action == "backup" else "rw"
        scratch = {}
        for name in ("tmp", "data"):  # the Job's emptyDirs (0777)
            scratch[name] = self.work / f"{name}-{time.monotonic_ns()}"
            scratch[name].mkdir(mode=0o777)
            scratch[name].chmod(0o777)
        base = {
            "RESTIC_REPOSITORY": self.url,
            "RESTIC_PASSWORD": self.password,
            "AWS_ACCESS_KEY_ID": self.s3.access_key_id,
            "AWS_SECRET_ACCESS_KEY": secret or self.s3.secret_access_key,
            "VPES_HOST": HOST,
            **env,
        }
        out = ["run", "--rm", "--network", "host", "--read-only", "--cap-drop", "ALL"]
        out += ["--user", MAIL_USER, "--security-opt", "no-new-privileges"]
        out += ["-v", f"{scratch['tmp']}:/tmp", "-v", f"{scratch['data']}:/data"]
        out += ["-v", f"{volume}:/data/mail:{mode}"]
        out += ["-v", f"{term}:/dev/termination-log"]
        objects = self.work / "objects"
        if action == "backup" and objects.is_dir():
            out += ["-v", f"{objects}:/run/vpes/objects:ro"]
        for k, v in base.items():
            out += ["-e", f"{k}={v}"]
        return [*out, self.image, action]

    def prepare(self, volume: Path) -> None:
        """The restore Job's init container: root, CAP_CHOWN alone."""
        podman(
            *["run", "--rm", "--read-only", "--cap-drop", "ALL", "--cap-add", "CHOWN"],
            *["--user", "0:0", "--security-opt", "no-new-privileges"],
            *["-v", f"{volume}:/data/mail", self.image, "prepare"],
            timeout=60,
        )

    def run(
        self, action: str, volume: Path, secret: str | None = None, **env: str
    ) -> tuple[int, dict[str, Any]]:
        if action == "restore":
            self.prepare(volume)
        done = podman(*self.args(action, volume, env, secret), check=False, timeout=300)
        text = self.last_term.read_text().strip()
        assert text, f"no termination message; stderr: {done.stderr[-2000:]}"
        assert len(text.encode()) <= 4096  # the kubelet keeps at most 4 KiB
        return done.returncode, json.loads(text)

    def restic(self, *args: str, volume: Path | None = None) -> subprocess.CompletedProcess[str]:
        """restic itself, from the image (for checks the Jobs do not do); with a
        volume, as root, as backups ran before they ran as the mail user."""
        cmd = ["run", "--rm", "--network", "host", "--entrypoint", "restic"]
        if volume is not None:
            cmd += ["--user", "0:0", "-v", f"{volume}:/data/mail:ro"]
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
    calendars(root)
    for path in root.rglob("*"):
        if not str(path.relative_to(root)).startswith(NOT_MAIL):
            os.chown(path, 5000, 5000)
    # The top directory as vpes-init leaves it; what is not the mail user's.
    os.chown(root, 0, 5000)
    os.chmod(root, 0o2775)
    (root / "lost+found").mkdir(mode=0o700, exist_ok=True)
    deferred = root / "postfix-queue" / "deferred" / "A"
    deferred.mkdir(parents=True, exist_ok=True)
    (deferred / f"A{messages}BC").write_bytes(b"queued mail " + os.urandom(64).hex().encode())
    for path in [deferred.parent, deferred, *deferred.iterdir()]:
        os.chown(path, *POSTFIX)
        os.chmod(path, 0o700)
    spool = root / "learn-spool"  # vmail's, group vpes-learn, 2770 (vpes-init)
    spool.mkdir(exist_ok=True)
    (spool / f"{messages}.spam.alice@example.org").write_bytes(b"Subject: junk\r\n\r\nx\r\n")
    for path in [spool, *spool.iterdir()]:
        os.chown(path, 5000, 5001)
    os.chmod(spool, 0o2770)


def calendars(root: Path, event: bool = True) -> None:
    """The dav container's collections (images/dav) as Radicale leaves them: the
    mail user's .dav (0700), its lock file and, with `event`, a calendar."""
    dav = root / ".dav" / "collections"
    dav.mkdir(parents=True, exist_ok=True)
    (dav / ".Radicale.lock").write_bytes(b"")
    if event:
        cal = dav / "collection-root" / "alice@example.org" / "family"
        cal.mkdir(parents=True, exist_ok=True)
        (cal / ".Radicale.props").write_text('{"tag": "VCALENDAR"}')
        (cal / "dinner.ics").write_text("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
    for path in [root / ".dav", *(root / ".dav").rglob("*")]:
        os.chown(path, 5000, 5000)
    os.chmod(root / ".dav", 0o700)


def mail(tree: dict[str, tuple[int, int, int, bytes]]) -> dict[str, tuple[int, int, int, bytes]]:
    """What a backup holds of a volume: not the queue, not lost+found."""
    return {k: v for k, v in tree.items() if not k.startswith(NOT_MAIL)}


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
    assert tree(target) == mail(tree(volume))
    assert oct(target.stat().st_mode)[-4:] == "2775" and target.stat().st_gid == 5000

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
    assert not (target / "newer-mail").exists() and tree(target) == mail(tree(volume))


def test_calendars_count_as_data_but_an_empty_calendars_directory_does_not(
    runner: Runner, tmp_path: Path
) -> None:
    volume, target = tmp_path / "volume", tmp_path / "target"
    volume.mkdir(), target.mkdir()
    maildir(volume, 3)
    code, snap = runner.run("backup", volume, VPES_INIT="1")
    assert code == 0, snap
    # What every started tenant has: the directory and Radicale's lock, no calendar.
    calendars(target, event=False)
    code, done = runner.run("restore", target, VPES_SNAPSHOT=snap["snapshot"])
    assert (code, done["ok"]) == (0, True), done
    assert tree(target) == mail(tree(volume))
    assert (
        target / ".dav/collections/collection-root/alice@example.org/family/dinner.ics"
    ).exists()
    # A calendar is the customer's data: a restore over it must be asked for.
    code, refused = runner.run("restore", target, VPES_SNAPSHOT=snap["snapshot"])
    assert (code, refused["reason"]) == (1, "VolumeNotEmpty"), refused


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
    # The mail's contents (the largest pack), not the trees: the snapshot can be
    # listed, and the restore fails once the mail has been set aside.
    sizes = {
        k: s3.s3().head_object(Bucket=s3.bucket, Key=k)["ContentLength"]
        for k in s3.keys(f"{prefix}/data/")
    }
    largest = max(sizes, key=lambda k: sizes[k])
    s3.s3().put_object(Bucket=s3.bucket, Key=largest, Body=os.urandom(2048))
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
    os.chown(aside, 5000, 5000)  # made by the restore, as the mail user
    moved = sorted(p for p in target.iterdir() if p != aside and p.name not in NOT_MAIL)
    if state.endswith("moving"):
        moved = moved[: max(1, len(moved) // 2)]  # cut short half-way
    for entry in moved:
        entry.rename(aside / entry.name)
    if state.endswith("previous"):
        (target / "example.org").mkdir()  # what a restore had written before it died
        (target / "example.org" / "partial").write_text("half a message")
        for path in (target / "example.org", target / "example.org" / "partial"):
            os.chown(path, 5000, 5000)
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


def test_a_snapshot_taken_as_root_restores_its_mail_and_leaves_the_servers_queue(
    runner: Runner, tmp_path: Path
) -> None:
    """Snapshots taken as root (before backups ran as the mail user) hold the queue
    and lost+found: a restore leaves both out, and the server's own queue and learn
    spool (in flight: delivered, posted once it is back) where they are."""
    volume, target = tmp_path / "volume", tmp_path / "target"
    volume.mkdir()
    target.mkdir()
    maildir(volume, 7)
    code, _ = runner.run("backup", volume, VPES_INIT="1")
    assert code == 0
    old = runner.restic("backup", "--json", "--host", HOST, "/data/mail", volume=volume)
    assert old.returncode == 0, old.stderr
    snapshot = json.loads(old.stdout.strip().splitlines()[-1])["snapshot_id"]
    listed = runner.restic("ls", snapshot, "/data/mail/postfix-queue/deferred/A")
    assert "A7BC" in listed.stdout  # the old snapshot does hold a queue file
    maildir(target, 2)
    queue = {
        k: v for k, v in tree(target).items() if k.startswith(("postfix-queue", "learn-spool"))
    }
    code, done = runner.run("restore", target, VPES_SNAPSHOT=snapshot, VPES_OVERWRITE="1")
    assert (code, done["ok"]) == (0, True), done
    assert tree(target) == mail(tree(volume)) | queue | {"lost+found": tree(target)["lost+found"]}
