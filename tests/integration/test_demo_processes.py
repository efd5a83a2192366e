"""`make demo` twice, then `make demo-down` (issue 14, item 13): the processes `up`
starts beside the cluster (stripe-mock and the S3 server; the operator and billing
run in the cluster, installed by the chart) are started once, reused by a second
`up` (the same addresses), replaced when one has died, and all stopped by `down`.

The parts of `up` that start them (`demo.start_stripe`, `demo.start_s3`) run with a
temporary state directory; /proc is scanned for every process tied to that
directory, whatever any record says (billing too: demos before the chart ran it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from vpes_devcluster import demo, wait_for

KINDS = ("billing", "stripe-mock", "s3")


def _kind(argv: list[str]) -> str | None:
    names = [Path(a).name for a in argv]
    if "vpes_billing" in argv:
        return "billing"
    if names and names[0] == "stripe-mock":
        return "stripe-mock"
    if "moto_server" in names:
        return "s3"
    return None


def demo_processes(state: Path) -> dict[str, list[int]]:
    """The live processes of the demo in `state`, by kind: those with an argument of
    their command line, or the file their output goes to, under `state`."""
    found: dict[str, list[int]] = {k: [] for k in KINDS}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if not raw:  # exited (a zombie) or a kernel thread
            continue
        argv = raw.rstrip(b"\0").decode(errors="replace").split("\0")
        try:
            output = os.readlink(entry / "fd" / "1")
        except OSError:
            output = ""
        if not any(str(state) in a for a in [*argv, output]):
            continue
        kind = _kind(argv)
        if kind is not None:
            found[kind].append(int(entry.name))
    return found


def kill(pid: int) -> None:
    """SIGKILL `pid` and wait until it has exited (signals are delivered asynchronously)."""
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _exited(pid), 10, f"pid {pid} to exit")


def _exited(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/cmdline").read_bytes()  # empty: a zombie
    except OSError:
        return True


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """The demo's state directory; whatever of it still runs afterwards is killed (so
    a failing test leaves nothing behind)."""
    path = tmp_path / "demo"
    path.mkdir()
    try:
        yield path
    finally:
        for pids in demo_processes(path).values():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_stripe_up_up_down_leaves_nothing(state: Path) -> None:
    url = demo.start_stripe(state, host="127.0.0.1")
    first = demo_processes(state)
    assert len(first["stripe-mock"]) == 1, first

    again = demo.start_stripe(state, host="127.0.0.1")
    assert again == url, "a second `up` points billing at another stripe-mock"
    assert demo_processes(state) == first, "a second `up` started stripe-mock again"

    # It died: replaced, once.
    kill(first["stripe-mock"][0])
    demo.start_stripe(state, host="127.0.0.1")
    now = demo_processes(state)
    assert len(now["stripe-mock"]) == 1 and now["stripe-mock"] != first["stripe-mock"], now

    assert demo.down(state) == 0
    assert demo_processes(state) == {k: [] for k in KINDS}, "`down` left processes running"


def test_s3_up_up_down_leaves_nothing(state: Path) -> None:
    s3 = demo.start_s3(state, host="127.0.0.1")
    first = demo_processes(state)
    assert len(first["s3"]) == 1, first

    again = demo.start_s3(state, host="127.0.0.1")
    assert demo_processes(state) == first, "a second `up` started S3 again"
    assert (again.endpoint, again.access_key_id, again.secret_access_key) == (
        s3.endpoint,
        s3.access_key_id,
        s3.secret_access_key,
    )
    assert again.keys("") == []  # the same server, and the recorded keys work on it
    # The operator makes each repository's own IAM user with these keys.
    assert again.client("iam").list_users()["Users"]

    kill(first["s3"][0])
    demo.start_s3(state, host="127.0.0.1")
    now = demo_processes(state)
    assert len(now["s3"]) == 1 and now["s3"] != first["s3"], now

    # One recorded before the provider's user could manage IAM is replaced, not reused.
    record = state / demo.S3_RECORD
    saved = json.loads(record.read_text())
    del saved["data"]["iam"]
    record.write_text(json.dumps(saved))
    demo.start_s3(state, host="127.0.0.1")
    replaced = demo_processes(state)
    assert len(replaced["s3"]) == 1 and replaced["s3"] != now["s3"], replaced

    assert demo.down(state) == 0
    assert demo_processes(state) == {k: [] for k in KINDS}, "`down` left processes running"
