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
