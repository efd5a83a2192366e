#!/usr/bin/env bash
# Fills the build context $1 with the project's source (its wheel is built in the
# image) and a wheelhouse of its dependencies, fetched here by the project's venv
# (`make install`), whose pip is set up for this machine's package index: the
# image build itself downloads nothing.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=${VPES_PYTHON:-$repo/.venv/bin/python}
mkdir -p "$1/src"
cp "$repo/pyproject.toml" "$1/src/"
for dir in operator billing panel tools/devcluster; do
  mkdir -p "$1/src/$dir"
  (cd "$repo/$dir" && find . -name __pycache__ -prune -o -name '*.egg-info' -prune -o -type f -print0 \
    | xargs -0 cp --parents -t "$1/src/$dir")
done
"$python" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
  "$repo/pyproject.toml" > "$1/requirements.txt"
# The wheelhouse is kept per list of requirements, so it is fetched once.
key=$(sha256sum "$1/requirements.txt" | cut -c1-16)
wheels=${VPES_CACHE:-$HOME/.cache/vpes}/wheels/$key
if [[ ! -f $wheels/.complete ]]; then
  rm -rf "$wheels"
  "$python" -m pip wheel --quiet --disable-pip-version-check -w "$wheels" \
    -r "$1/requirements.txt" "setuptools>=77" wheel >&2
  touch "$wheels/.complete"
fi
mkdir -p "$1/wheels"
cp "$wheels"/*.whl "$1/wheels/"
