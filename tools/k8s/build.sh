#!/usr/bin/env bash
# Builds the control-plane and node binaries (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kubelet and kube-proxy in one
# multi-call binary; kwok, helm, CoreDNS and kube-router beside it) from the Go
# module proxy, into a cache outside the checkout keyed by these modules' inputs.
# A second run with the same inputs builds nothing.
# Prints the directory that holds the binaries on its last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${VPES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vpes}
inputs=(go.mod go.sum main.go build.sh kwok/go.mod kwok/go.sum coredns/go.mod coredns/go.sum
  coredns/main.go kube-router/go.mod kube-router/go.sum)
key=$(cd "$here" && cat "${inputs[@]}" | sha256sum | cut -c1-16)
out="$cache_root/k8s-$key"
if [[ -f "$out/.complete" ]]; then
  echo "$out/bin"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: Go is required (https://go.dev/dl); none found on PATH" >&2; exit 1; }

k8s_version=$(awk '$1=="k8s.io/kubernetes"{print $2; exit}' "$here/go.mod")
major=$(echo "${k8s_version#v}" | cut -d. -f1)
minor=$(echo "${k8s_version#v}" | cut -d. -f2)
helm_version=$(awk '$1=="helm.sh/helm/v3"{print $2; exit}' "$here/go.mod")
kwok_version=$(awk '$2=="sigs.k8s.io/kwok"{print $3; exit}' "$here/kwok/go.mod")
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)

kv=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kv+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  kv+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$now"
done
hv="-X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  hv+=" -X $pkg.k8sVersionMajor=$major -X $pkg.k8sVersionMinor=$minor"
done
wv="-X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_version#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${k8s_version#v}"

tmp="$out.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp/bin"
trap 'rm -rf "$tmp"' EXIT
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
echo "building control plane $k8s_version, helm $helm_version, kwok $kwok_version into $out (first time only; ~20 min on 2 cores)" >&2
go build -trimpath -ldflags "-s -w $kv" -o "$tmp/bin/vpes-k8s" .
go build -trimpath -ldflags "-s -w $kv $hv" -o "$tmp/bin/helm" helm.sh/helm/v3/cmd/helm
(cd kwok && go build -trimpath -ldflags "-s -w $wv" -o "$tmp/bin/kwok" sigs.k8s.io/kwok/cmd/kwok)
(cd coredns && go build -trimpath -ldflags "-s -w" -o "$tmp/bin/coredns" .)
(cd kube-router && go build -trimpath -ldflags "-s -w" -o "$tmp/bin/kube-router" \
  github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
  ln -s vpes-k8s "$tmp/bin/$c"
done
touch "$tmp/.complete"
rm -rf "$out"; mv "$tmp" "$out"
trap - EXIT
echo "$out/bin"
