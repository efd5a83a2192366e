#!/usr/bin/env bash
# Builds localhost/vpes-<name>:<tag> for each name given (default: tenant) on
# top of images/base, with no registry. <tag> is a hash of the base image's tag
# and every file in images/<name>/: when an image with that tag exists nothing
# is built. Each image is also saved (docker-archive, for `ctr images import`)
# to ~/.cache/vpes/images/vpes-<name>-<tag>.tar.
# An image whose directory has a prepare.sh (pause, coredns: a static binary in
# a FROM scratch image; operator: the project's source) is built from a copy of
# its directory that prepare.sh fills; the tag then hashes that context.
# Prints one image reference per name on stdout; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${CONTAINERS_CONF:=$here/containers.conf}"
export CONTAINERS_CONF
archives=${VPES_CACHE:-$HOME/.cache/vpes}/images
log() { printf 'images: %s\n' "$*" >&2; }

base=""  # built (or found) only when an image needs it
[[ $# -gt 0 ]] || set -- tenant
mkdir -p "$archives"
contexts=()
trap 'rm -rf "${contexts[@]}"' EXIT
for name in "$@"; do
  dir=$here/$name
  [[ -f $dir/Containerfile ]] || { log "no such image: $dir/Containerfile"; exit 2; }
  if [[ -f $dir/prepare.sh ]]; then
    context=$(mktemp -d)
    contexts+=("$context")
    cp -r "$dir/." "$context/"
    bash "$dir/prepare.sh" "$context"
    dir=$context
  fi
  uses_base=""
  if grep -q '^ARG BASE' "$dir/Containerfile"; then
    [[ -n $base ]] || base=$(bash "$here/base/build.sh")
    uses_base=$base
  fi
  tag=$( {
    echo "$uses_base"
    cat "${BASH_SOURCE[0]}"
    (cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-12)
  image=localhost/vpes-$name:$tag
  if podman image exists "$image"; then
    log "$image exists"
  else
    log "building $image"
    start=$SECONDS
    # Host network for the build: it only fetches Debian packages.
    podman build --quiet --network host --pull=never --build-arg "BASE=$base" \
      -t "$image" -f "$dir/Containerfile" "$dir" >/dev/null
    log "built $image in $((SECONDS - start)) s"
  fi
  archive=$archives/vpes-$name-$tag.tar
  if [[ ! -s $archive ]]; then
    podman save --quiet --format docker-archive -o "$archive.part" "$image"
    mv "$archive.part" "$archive"
    find "$archives" -maxdepth 1 -name "vpes-$name-*.tar" ! -name "vpes-$name-$tag.tar" -delete
    log "saved $archive"
  fi
  echo "$image"
done
