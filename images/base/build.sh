#!/usr/bin/env bash
# Builds localhost/vpes-base:<tag>: a Debian bookworm minbase rootfs made with
# debootstrap from Debian's own packages (bookworm, bookworm-updates and
# bookworm-security, upgraded, apt lists removed), imported into podman.
#
# <tag> is a hash of this script's inputs. When the image with that tag exists
# nothing is done; when only the cached rootfs tarball exists
# (~/.cache/vpes/base/) it is imported again without running debootstrap.
# Prints the image reference on stdout (everything else goes to stderr).
# Needs root (debootstrap, chroot, rootful podman).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${CONTAINERS_CONF:=$(cd "$here/.." && pwd)/containers.conf}"
export CONTAINERS_CONF

suite=bookworm
mirror=${VPES_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${VPES_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
cache=${VPES_CACHE:-$HOME/.cache/vpes}/base

sources() {
  printf 'deb %s %s main\n' "$mirror" "$suite" "$mirror" "$suite-updates"
  printf 'deb %s %s-security main\n' "$security_mirror" "$suite"
}

# The tag changes when this script or the sources change. The mirrors' content
# moving on (a new security update) does not change it: `VPES_BASE_REFRESH=1`
# forces a fresh debootstrap, which then gets a new tag from its date.
inputs=$( { cat "${BASH_SOURCE[0]}"; sources; printf '%s\n' "${VPES_BASE_EPOCH:-}"; } | sha256sum | cut -c1-12)
tag=$inputs
image=localhost/vpes-base:$tag

log() { printf 'images/base: %s\n' "$*" >&2; }

if podman image exists "$image" && [[ -z ${VPES_BASE_REFRESH:-} ]]; then
  log "$image exists"
  echo "$image"
  exit 0
fi

mkdir -p "$cache"
tarball=$cache/rootfs-$tag.tar
if [[ ! -s $tarball || -n ${VPES_BASE_REFRESH:-} ]]; then
  work=$(mktemp -d "$cache/work.XXXXXX")
  rootfs=$work/rootfs
  cleanup() {
    mountpoint -q "$rootfs/proc" && umount "$rootfs/proc"
    rm -rf "$work"
  }
  trap cleanup EXIT
  log "debootstrap --variant=minbase $suite (a few minutes)"
  debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -30 "$work/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }
  sources >"$rootfs/etc/apt/sources.list"
  mount -t proc proc "$rootfs/proc"
  log "apt-get upgrade from $suite-updates and $suite-security"
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -ec 'apt-get update -qq; apt-get -y -qq dist-upgrade; apt-get clean' >"$work/upgrade.log" 2>&1 ||
    { tail -30 "$work/upgrade.log" >&2; log "apt-get upgrade failed"; exit 1; }
  umount "$rootfs/proc"
  # No apt lists, caches or logs in the image; images that install packages
  # run `apt-get update` themselves and clean up after.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/apt/* "$rootfs"/var/log/dpkg.log \
    "$rootfs"/var/log/bootstrap.log "$rootfs"/tmp/* "$rootfs"/root/.bash_history
  : >"$rootfs/etc/machine-id"
  # Never start services while installing packages in a container build.
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
  tar --numeric-owner --xattrs --xattrs-include='*' -C "$rootfs" -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  # Only the current inputs' tarball is kept.
  find "$cache" -maxdepth 1 -name 'rootfs-*.tar' ! -name "rootfs-$tag.tar" -delete
  cleanup
  trap - EXIT
fi

log "podman import $tarball"
podman import --quiet --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
  "$tarball" "$image" >/dev/null
echo "$image"
