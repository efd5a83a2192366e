{{- define "vpes.labels" -}}
app.kubernetes.io/part-of: vpes
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
