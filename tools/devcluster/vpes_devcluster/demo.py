"""`make demo`: a local control plane, vpes installed, the operator, a sample customer.

    python -m vpes_devcluster.demo up   [--state DIR]   everything, until the sample is Ready
    python -m vpes_devcluster.demo down [--state DIR]   stop all of it

The cluster and the operator keep running after `up` returns, so the demo can
be explored with kubectl (the command prints how).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from .binaries import repo_root
from .cluster import Cluster
from .errors import ClusterError
from .platform import install_platform

SAMPLE_NAMESPACE = "customer-alice"
SAMPLE = "alice"


def _operator_pid(state: Path) -> int | None:
    pid_file = state / "operator.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    return pid if b"vpes_operator" in cmdline else None


def start_operator(state: Path, kubeconfig: Path) -> int:
    running = _operator_pid(state)
    if running:
        return running
    log = (state / "operator.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vpes_operator", "--liveness", ""],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=repo_root(),
    )
    (state / "operator.pid").write_text(str(proc.pid))
    return proc.pid


def wait_ready(cluster: Cluster, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cluster.kubectl(
            "get",
            "pms",
            SAMPLE,
            "-n",
            SAMPLE_NAMESPACE,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False,
        )
        if out.stdout.strip() == "True":
            return
        time.sleep(1)
    raise ClusterError(f"the sample server did not become Ready within {timeout:.0f}s")


def up(state: Path) -> int:
    state.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(state / "cluster")
    if not cluster.running():
        print("starting the control plane ...", flush=True)
        cluster.start()
    print("installing vpes (CRDs, RBAC) ...", flush=True)
    kubeconfig = install_platform(cluster)
    pid = start_operator(state, kubeconfig)
    print(f"operator running (pid {pid}, log {state / 'operator.log'})", flush=True)
    examples = repo_root() / "examples"
    cluster.kubectl("apply", "--server-side", "-f", str(examples / "plan-personal.yaml"))
    cluster.kubectl("apply", "--server-side", "-f", str(examples / "server-alice.yaml"))
    print("waiting for the sample customer to be Ready ...", flush=True)
    wait_ready(cluster)
    print(cluster.kubectl("get", "vpes", "-A").stdout)
    print(cluster.kubectl("get", "pms", "-A", "-o", "wide").stdout)
    shown = cluster.kubectl(
        "get",
        "secret",
        f"{SAMPLE}-initial-passwords",
        "-n",
        SAMPLE_NAMESPACE,
        "-o",
        "jsonpath={.data.passwords\\.json}",
        check=False,
    ).stdout
    if shown:
        passwords = json.loads(base64.b64decode(shown))
        print("generated passwords (shown once, in Secret alice-initial-passwords):")
        for address in sorted(passwords):
            print(f"  {address}")
    print("explore it with:")
    print(f"  export KUBECONFIG={shlex.quote(str(cluster.kubeconfig))}")
    print(f'  export PATH={shlex.quote(str(cluster.bin_dir))}:"$PATH"')
    print("  kubectl get vpes -A; kubectl describe pms alice -n customer-alice")
    print("stop it with: make demo-down")
    return 0


def down(state: Path) -> int:
    pid = _operator_pid(state)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if _operator_pid(state) is None:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    cluster = Cluster(state / "cluster")
    if (state / "cluster").exists():
        cluster.stop(remove=True)
    if state.exists():
        for f in ("operator.pid", "operator.log"):
            (state / f).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            state.rmdir()
    print("demo stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--state", type=Path, default=repo_root() / ".state" / "demo")
    args = parser.parse_args(argv)
    try:
        return up(args.state) if args.command == "up" else down(args.state)
    except ClusterError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
