//go:build tools

// Package kuberouter records the kube-router command so that `go mod tidy`
// keeps it in this module. The dev node runs it as its NetworkPolicy enforcer
// only (--run-firewall=true --run-router=false --run-service-proxy=false).
//
// v2.1.0 is the only version the Go module proxy serves. The security
// advisories against it concern its service proxy (external IPs reachable
// from outside), which this mode leaves off. It has a module of its own
// because it keeps the Kubernetes libraries of its own release.
package kuberouter

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
