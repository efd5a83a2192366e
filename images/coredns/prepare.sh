#!/usr/bin/env bash
# Fills the build context $1 with CoreDNS as tools/k8s/build.sh builds it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$(bash "$here/../../tools/k8s/build.sh" | tail -n 1)
cp "$bin/coredns" "$1/coredns"
