"""A podlet as a component of a :class:`~vpes_devcluster.cluster.Cluster`: its own
identity (a client certificate signed by the cluster's CA, group system:masters like
kwok's: a dev cluster's node agent may do anything), its kubeconfig, its command line."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vpes_devcluster import kubeconfig
from vpes_devcluster.kube import Rest
from vpes_devcluster.pki import VALIDITY, KeyPair, Pki
from vpes_devcluster.podlet_node import is_schedulable

STATE_DIR = "podlets"  # inside the cluster's state directory


def node_name(index: int) -> str:
    return f"podlet-{index}"


def node_ready(rest: Rest, name: str) -> bool:
    """The podlet's Node is Ready and no longer tainted not-ready."""
    return is_schedulable(rest, name)


def issue(pki: Pki, name: str) -> KeyPair:
    """A client certificate ``vpes:devcluster-<name>`` in system:masters, next to the
    cluster's other keys."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{pki.ca.key} is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"vpes:devcluster-{name}"),
        ]
    )
    stamp = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(stamp - dt.timedelta(minutes=5))
        .not_valid_after(stamp + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pair = KeyPair(pki.directory / f"{name}.crt", pki.directory / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pair.key.chmod(0o600)
    return pair


def prepare(state_dir: Path, server: str, index: int) -> tuple[str, list[str]]:
    """Write podlet ``index``'s certificate and kubeconfig; (its node name, its argv)."""
    name = node_name(index)
    keys = Pki(state_dir / "pki")
    pair = issue(keys, name)
    config = state_dir / "kubeconfig" / f"{name}.yaml"
    kubeconfig.write_for_cert(config, server, keys.ca.cert, pair.cert, pair.key, name)
    argv = [
        sys.executable,
        "-m",
        "vpes_devcluster.podlet",
        f"--kubeconfig={config}",
        f"--state={state_dir / STATE_DIR / name}",
        f"--node={name}",
    ]
    return name, argv
