#!/usr/bin/env bash
# Fills the build context $1 with the static pause binary.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gcc -static -Os -s -o "$1/pause" "$here/pause.c"
