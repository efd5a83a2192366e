//go:build tools

// This file records the other commands built from this module, so that
// `go mod tidy` keeps them in go.mod and go.sum.
package main

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
