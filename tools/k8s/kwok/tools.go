//go:build tools

// Package kwok records the kwok command so that `go mod tidy` keeps it in this
// module. kwok lives in its own module because it is only an API client: it
// keeps the Kubernetes libraries of its own release, which no longer compile
// against the control plane's (k8s.io/apimachinery v0.34 removed a constant
// kwok v0.7.0 uses).
package kwok

import _ "sigs.k8s.io/kwok/cmd/kwok"
