"""stripe-mock on loopback, answering with the subscription a test or the demo says.

stripe-mock is stateless: it answers every GET from its fixtures. Tests say
what Stripe's *current* state of the subscription is by restarting it with a
fixture of their own (`StripeMock.set_subscription`), which is exactly the
input the billing service decides from.
"""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from vpes_devcluster import proc_records
from vpes_devcluster.binaries import repo_root
from vpes_devcluster.procs import free_port, terminate


def stripe_mock_dir() -> Path:
    out = subprocess.run(
        ["bash", str(repo_root() / "tools" / "stripe-mock" / "build.sh")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(out.strip().splitlines()[-1])


class StripeMock:
    def __init__(self, workdir: Path, *, detach: bool = False, host: str = "127.0.0.1") -> None:
        """`detach`: stripe-mock runs in a session of its own and outlives this process
        (the demo). Its pid, port and marker (the fixtures file, an argument of its
        command line) are recorded in `workdir/stripe-mock.pid` (`proc_records`)."""
        self.dir = stripe_mock_dir()
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.fixtures: dict[str, Any] = json.loads((self.dir / "fixtures3.json").read_text())
        self.host = host  # the demo's in-cluster billing reaches it on the node's address
        self.port = free_port(host)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.detach = detach

    @property
    def record(self) -> Path:
        return self.workdir / "stripe-mock.pid"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set_subscription(
        self, *, customer: str, status: str = "active", price: str | None = None
    ) -> None:
        """Restart stripe-mock answering with this subscription state."""
        fixtures = copy.deepcopy(self.fixtures)
        if price is not None:
            # Nested objects (items, their price and plan) are filled from fixtures
            # of their own: replace the bundled price id everywhere.
            bundled = fixtures["resources"]["price"]["id"]
            fixtures = json.loads(json.dumps(fixtures).replace(f'"{bundled}"', f'"{price}"'))
        sub = fixtures["resources"]["subscription"]
        sub["customer"] = customer
        sub["status"] = status
        self._start(fixtures)

    def _start(self, fixtures: dict[str, Any]) -> None:
        self.stop()
        self.starts += 1
        path = (self.workdir / f"fixtures-{self.starts}.json").absolute()
        path.write_text(json.dumps(fixtures))
        log = (self.workdir / f"stripe-mock-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [
                str(self.dir / "stripe-mock"),
                "-http-addr",
                f"{self.host}:{self.port}",
                # Without this it also listens for HTTPS on *:12112, so a second
                # stripe-mock could not start (and it would listen beyond loopback).
                "-https-addr",
                f"{self.host}:0",
                "-fixtures",
                str(path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=self.detach,
        )
        proc_records.write(self.record, self.proc.pid, str(path), port=self.port, host=self.host)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"stripe-mock exited with {self.proc.returncode}; see {log.name}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("stripe-mock did not start listening within 30s")

    def start(self) -> None:
        self._start(self.fixtures)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
        self.proc = None
        self.record.unlink(missing_ok=True)
