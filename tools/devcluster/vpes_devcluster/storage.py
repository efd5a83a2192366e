"""The dev cluster's storage: the default StorageClass and the hostPath volumes that
the provisioner makes for its claims."""

from __future__ import annotations

from pathlib import Path

from vpes_operator.clients.kube import JSON

STORAGE_CLASS = "vpes-local"
PROVISIONER = "vpes.io/devcluster-hostpath"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
ANN_DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
PVC_PATH = "/api/v1/persistentvolumeclaims"
PV_PATH = "/api/v1/persistentvolumes"
SC_PATH = "/apis/storage.k8s.io/v1/storageclasses"


def storage_class() -> JSON:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": {ANN_DEFAULT_CLASS: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": True,
    }


def volume_name(claim: JSON) -> str:
    return f"pvc-{claim['metadata']['uid']}"


def requested(claim: JSON) -> str | None:
    value = ((claim.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")
    return str(value) if value is not None else None


def persistent_volume(claim: JSON, root: Path) -> JSON:
    """The hostPath volume for ``claim``, bound to it in advance."""
    meta, spec = claim["metadata"], claim.get("spec") or {}
    name = volume_name(claim)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {ANN_PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": requested(claim) or "1Gi"},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "hostPath": {"path": str(root / name), "type": "DirectoryOrCreate"},
        },
    }
