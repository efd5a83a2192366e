// Command coredns is CoreDNS with only the plugins the dev cluster's DNS needs
// (the kubernetes plugin for <svc>.<ns>.svc names, health and ready for probes,
// cache, errors and log, and template: the example domains answered as published
// mail domains, see tools/devcluster/vpes_devcluster/coredns.yaml). Plugins register themselves when imported; the full
// build (core/plugin) pulls in every cloud provider's SDK.
package main

import (
	_ "github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/template"
)

func main() {
	coremain.Run()
}
