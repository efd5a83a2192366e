{{- define "vpes.labels" -}}
app.kubernetes.io/part-of: vpes
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "vpes.operatorSelector" -}}
app.kubernetes.io/part-of: vpes
app.kubernetes.io/instance: {{ .Release.Name }}
vpes.io/component: operator
{{- end -}}

{{- /* The billing Deployment's and Service's selector (billing-deployment.yaml). */ -}}
{{- define "vpes.billingSelector" -}}
app.kubernetes.io/part-of: vpes
app.kubernetes.io/instance: {{ .Release.Name }}
vpes.io/component: billing
{{- end -}}

{{- define "vpes.kvlist" -}}
{{- $out := list -}}
{{- range $k, $v := . -}}{{- $out = append $out (printf "%s=%s" $k $v) -}}{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{- /* An image reference: pinned by digest when one is given, else by tag. */ -}}
{{- define "vpes.image" -}}
{{- if .digest -}}
{{ .repository }}@{{ .digest }}
{{- else -}}
{{ .repository }}:{{ .tag }}
{{- end -}}
{{- end -}}

{{- /* The inbound MX's pods: the tenants' NetworkPolicies admit pods labelled
part-of=vpes, component=edge in this namespace (the operator's edgePodLabels). */ -}}
{{- define "vpes.edgeMxSelector" -}}
app.kubernetes.io/part-of: vpes
app.kubernetes.io/instance: {{ .Release.Name }}
vpes.io/component: edge
vpes.io/edge-role: mx
{{- end -}}

{{- /* Rspamd's pods: not "edge", so that they never reach a tenant. */ -}}
{{- define "vpes.antispamSelector" -}}
app.kubernetes.io/part-of: vpes
app.kubernetes.io/instance: {{ .Release.Name }}
vpes.io/component: antispam
{{- end -}}

{{- define "vpes.redisSelector" -}}
app.kubernetes.io/part-of: vpes
app.kubernetes.io/instance: {{ .Release.Name }}
vpes.io/component: antispam-redis
{{- end -}}

{{- /* The login proxy's pods: edge too (they reach the tenants). */ -}}
{{- define "vpes.edgeProxySelector" -}}
app.kubernetes.io/part-of: vpes
app.kubernetes.io/instance: {{ .Release.Name }}
vpes.io/component: edge
vpes.io/edge-role: proxy
{{- end -}}

{{- /* The outbound relay's pods: edge too (the tenants' egress admits edge pods). */ -}}
{{- define "vpes.edgeRelaySelector" -}}
app.kubernetes.io/part-of: vpes
app.kubernetes.io/instance: {{ .Release.Name }}
vpes.io/component: edge
vpes.io/edge-role: relay
{{- end -}}

{{- /* The names of the relay's shard Secrets, as a JSON list (the operator writes them). */ -}}
{{- define "vpes.relayShardNames" -}}
{{- $out := list -}}
{{- if .Values.edge.relay.enabled -}}
{{- range $i := until (int .Values.edge.relay.keyShards) -}}
{{- $out = append $out (printf "%s-edge-relay-%d" $.Release.Name $i) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{- /* The Secret of the edge's mail names (edge.tls.secretName, default vpes-edge-tls):
the operator's ACME client writes it, the edge's pods mount it; empty: none. */ -}}
{{- define "vpes.edgeTlsSecret" -}}
{{- dig "tls" "secretName" "vpes-edge-tls" .Values.edge -}}
{{- end -}}

{{- /* A NetworkPolicy ingress rule admitting the scrapers (monitoring.scrapeFrom) to
.ports; nothing when nobody may scrape. Call with (dict "root" $ "ports" (list ...)). */ -}}
{{- define "vpes.scrapeRule" -}}
{{- with .root.Values.monitoring.scrapeFrom -}}
# Prometheus: /metrics (monitoring.scrapeFrom).
- from:
    {{- toYaml . | nindent 4 }}
  ports:
    {{- range $.ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end }}
{{- end -}}

{{- /* Egress rules to the cluster DNS and the API server, for the pods that face the
internet (the panel, vpes-web). Call with their networkPolicy values (apiServerCIDRs,
apiServerPorts, dnsNamespace). The API server as NetworkPolicies see it: after the
kubernetes Service's translation, the control plane's own addresses. Given, else
looked up at install/upgrade (EndpointSlice and Service default/kubernetes), else
unknown (helm template): then any address on the usual ports. */ -}}
{{- define "vpes.dnsAndApiServerEgress" -}}
{{- $apiCidrs := .apiServerCIDRs | default list }}
{{- $apiPorts := .apiServerPorts | default list }}
{{- if not $apiCidrs }}
{{- $slice := lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "kubernetes" }}
{{- range ($slice.endpoints | default list) }}
{{- range (.addresses | default list) }}
{{- $apiCidrs = append $apiCidrs (printf "%s/%s" . (ternary "128" "32" (contains ":" .))) }}
{{- end }}
{{- end }}
{{- range ($slice.ports | default list) }}
{{- $apiPorts = append $apiPorts (int .port) }}
{{- end }}
{{- $service := lookup "v1" "Service" "default" "kubernetes" }}
{{- if and $apiCidrs $service }}
{{- with $service.spec.clusterIP }}
{{- $apiCidrs = append $apiCidrs (printf "%s/%s" . (ternary "128" "32" (contains ":" .))) }}
{{- end }}
{{- range ($service.spec.ports | default list) }}
{{- $apiPorts = append $apiPorts (int .port) }}
{{- end }}
{{- end }}
{{- end }}
{{- $apiPorts = $apiPorts | default (list 443 6443) | uniq -}}
- to:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: {{ .dnsNamespace | default "kube-system" }}}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
# The API server.
{{- if $apiCidrs }}
- to:
    {{- range $apiCidrs | uniq }}
    - ipBlock: {cidr: {{ . }}}
    {{- end }}
  ports:
{{- else }}
# (Its addresses unknown when rendered: any address, on its usual ports.)
- ports:
{{- end }}
    {{- range $apiPorts }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end -}}

{{- /* The webmail's pods (webmail.yaml) and its database's (webmail-db.yaml). */ -}}
{{- define "vpes.webmailSelector" -}}
app.kubernetes.io/part-of: vpes
app.kubernetes.io/instance: {{ .Release.Name }}
vpes.io/component: webmail
{{- end -}}

{{- define "vpes.webmailDbSelector" -}}
app.kubernetes.io/part-of: vpes
app.kubernetes.io/instance: {{ .Release.Name }}
vpes.io/component: webmail-db
{{- end -}}

{{- /* A Service's in-cluster name: <release>-<suffix>.<namespace>.svc.<clusterDomain>.
Call with (list $ "suffix"). */ -}}
{{- define "vpes.serviceHost" -}}
{{- $root := index . 0 -}}
{{ $root.Release.Name }}-{{ index . 1 }}.{{ $root.Release.Namespace }}.svc.{{ $root.Values.clusterDomain | default "cluster.local" }}
{{- end -}}
