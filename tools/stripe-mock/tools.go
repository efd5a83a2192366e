//go:build tools

// This file records the command built from this module (stripe-mock, the
// Stripe API test server), so that `go mod tidy` keeps it in go.mod and go.sum.
package tools

import (
	_ "github.com/stripe/stripe-mock"
)
