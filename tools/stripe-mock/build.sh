#!/usr/bin/env bash
# Builds stripe-mock (github.com/stripe/stripe-mock: the Stripe API test server,
# fed by Stripe's own OpenAPI spec and fixtures) from the Go module proxy into a
# cache outside the checkout keyed by this module's inputs, and copies the
# bundled fixtures beside it (tests start it with fixtures of their own that say
# what "Stripe's current state" is). A second run with the same inputs builds
# nothing. Prints the directory that holds the binary on its last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${VPES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vpes}
key=$(cat "$here/go.mod" "$here/go.sum" "$here/tools.go" "$here/build.sh" | sha256sum | cut -c1-16)
out="$cache_root/stripe-mock-$key"
if [[ -x "$out/bin/stripe-mock" && -f "$out/bin/fixtures3.json" && -f "$out/.complete" ]]; then
  echo "$out/bin"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: Go is required (https://go.dev/dl); none found on PATH" >&2; exit 1; }
version=$(awk '{for (i = 1; i < NF; i++) if ($i == "github.com/stripe/stripe-mock") {print $(i + 1); exit}}' "$here/go.mod")
tmp="$out.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp/bin"
trap 'rm -rf "$tmp"' EXIT
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly
echo "building stripe-mock $version into $out (first time only)" >&2
go build -trimpath -ldflags "-s -w" -o "$tmp/bin/stripe-mock" github.com/stripe/stripe-mock
src=$(go list -m -f '{{.Dir}}' github.com/stripe/stripe-mock)
cp "$src/embedded/openapi/fixtures3.json" "$tmp/bin/fixtures3.json"
chmod u+w "$tmp/bin/fixtures3.json"
touch "$tmp/.complete"
rm -rf "$out"; mv "$tmp" "$out"
trap - EXIT
echo "$out/bin"
