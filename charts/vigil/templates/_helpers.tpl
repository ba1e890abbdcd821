{{/* Object names: "<release>-vigil", or just the release name when it already says vigil. At most
52 characters, so StatefulSet pod and revision names stay within Kubernetes' 63. */}}
{{- define "vigil.name" -}}
{{- if contains "vigil" .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-vigil" .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vigil.labels" -}}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vigil.name" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Whether a monitoring object renders: (list $ .Values.<object> "Kind"). enabled: true or false,
or "auto": only where the cluster serves monitoring.coreos.com/v1 <Kind> (prometheus-operator). */}}
{{- define "vigil.monitoring" -}}
{{- $root := index . 0 -}}
{{- $config := index . 1 -}}
{{- $kind := index . 2 -}}
{{- if eq (toString $config.enabled) "auto" -}}
{{- if $root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" $kind) -}}true{{- end -}}
{{- else if $config.enabled -}}true
{{- end -}}
{{- end -}}

{{/* The PodMonitor/ServiceMonitor namespace selector: the watched namespaces, or any. */}}
{{- define "vigil.namespaceSelector" -}}
{{- if .Values.watchNamespaces }}
matchNames: {{- toYaml .Values.watchNamespaces | nindent 2 }}
{{- else }}
any: true
{{- end }}
{{- end -}}
