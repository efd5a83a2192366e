"""The tenant image itself: setuid/setgid bits kept from the Debian packages
through ``podman import`` and ``podman save`` (what containerd imports), and no
apt lists shipped in any layer."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from .tenant import podman

pytestmark = pytest.mark.images

# path → (mode bits that must be set, owner, group), as the Debian packages make them.
SPECIAL = {
    # Postfix's set-group-id helpers (postfix set-permissions): the queue's
    # maildrop and public sockets are writable only through group postdrop.
    "usr/sbin/postdrop": (stat.S_ISGID, "root", "postdrop"),
    "usr/sbin/postqueue": (stat.S_ISGID, "root", "postdrop"),
    # From the base rootfs: shows `tar --numeric-owner --xattrs | podman import`
    # kept its setuid bits too.
    "usr/bin/su": (stat.S_ISUID, "root", "root"),
    "usr/sbin/unix_chkpwd": (stat.S_ISGID, "root", "shadow"),
}
APT_LISTS = "var/lib/apt/lists/"


def _run(image: str, *cmd: str) -> str:
    out = podman("run", "--rm", "--network=none", "--entrypoint", cmd[0], image, *cmd[1:])
    return out.stdout


def test_setuid_and_setgid_bits_in_the_image(image: str) -> None:
    paths = [f"/{p}" for p in SPECIAL]
    lines = _run(image, "stat", "-c", "%f %U %G %n", *paths).splitlines()
    seen: dict[str, tuple[int, str, str]] = {}
    for line in lines:
        hex_mode, owner, group, path = line.split()
        seen[path.lstrip("/")] = (int(hex_mode, 16), owner, group)
    for path, (bits, owner, group) in SPECIAL.items():
        mode, got_owner, got_group = seen[path]
        assert mode & bits == bits, f"{path}: mode {stat.filemode(mode)}"
        assert not mode & stat.S_IWOTH, f"{path} is world-writable"
        assert (got_owner, got_group) == (owner, group), path
    assert _run(image, "getent", "group", "postdrop").startswith("postdrop:")


def _archive(image: str) -> Path:
    """The docker-archive images/build.sh saved for this image (ctr images import)."""
    name, _, tag = image.removeprefix("localhost/").partition(":")
    cache = Path(os.environ.get("VPES_CACHE", Path.home() / ".cache" / "vpes"))
    path = cache / "images" / f"{name}-{tag}.tar"
    assert path.is_file(), f"{path}: images/build.sh saves it"
    return path


def _layers(archive: Path) -> list[dict[str, tarfile.TarInfo]]:
    """Each layer of a docker-archive, in order: path → its tar entry."""
    out = []
    with tarfile.open(archive) as outer:
        manifest_file = outer.extractfile("manifest.json")
        assert manifest_file is not None
        (manifest,) = json.load(manifest_file)
        for layer in manifest["Layers"]:
            data = outer.extractfile(layer)
            assert data is not None
            with tarfile.open(fileobj=data) as inner:
                out.append({i.name.removeprefix("./"): i for i in inner})
    return out


@pytest.fixture(scope="module")
def layers(image: str) -> list[dict[str, tarfile.TarInfo]]:
    return _layers(_archive(image))


def test_setuid_and_setgid_bits_survive_the_saved_archive(
    image: str, layers: list[dict[str, tarfile.TarInfo]]
) -> None:
    gids = {
        group: int(_run(image, "getent", "group", group).split(":")[2])
        for group in {g for _, _, g in SPECIAL.values()}
    }
    for path, (bits, _owner, group) in SPECIAL.items():
        # The topmost layer that holds the file is what a runtime unpacks.
        info = next((layer[path] for layer in reversed(layers) if path in layer), None)
        assert info is not None, f"{path} is in no layer"
        assert info.mode & bits == bits, f"{path}: mode {oct(info.mode)} in the archive"
        assert (info.uid, info.gid) == (0, gids[group]), path


def test_apt_lists_are_empty(image: str, layers: list[dict[str, tarfile.TarInfo]]) -> None:
    assert _run(image, "find", f"/{APT_LISTS}", "-mindepth", "1") == ""
    assert _run(image, "find", "/var/cache/apt", "-name", "*.bin") == ""
    # Not only hidden by a later layer: no layer ships them at all.
    shipped = [
        name
        for layer in layers
        for name, info in layer.items()
        if name.startswith(APT_LISTS) and info.isfile() and ".wh." not in name
    ]
    assert shipped == []
