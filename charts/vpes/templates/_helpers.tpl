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
