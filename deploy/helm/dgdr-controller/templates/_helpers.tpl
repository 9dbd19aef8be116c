{{- define "dgdr.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dgdr.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dgdr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dgdr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dgdr.labels" -}}
{{ include "dgdr.selectorLabels" . }}
app.kubernetes.io/part-of: dgdr-controller
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "dgdr.leaseName" -}}
{{- default (include "dgdr.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/* The conversion webhook's Service: the CRD's clientConfig points at it (--webhook-service). */}}
{{- define "dgdr.webhookService" -}}
{{- printf "%s-webhook" (include "dgdr.fullname" .) -}}
{{- end -}}

{{/* The Secret the controller keeps its CA and serving certificate in (--webhook-secret). */}}
{{- define "dgdr.webhookSecret" -}}
{{- default (printf "%s-webhook-cert" (include "dgdr.fullname" .)) .Values.webhook.secretName -}}
{{- end -}}

{{/* cert-manager mode: the Certificate (its CA injected through the CRD annotation), and the
Secret cert-manager writes it to, mounted at dgdr.webhookCertDir. */}}
{{- define "dgdr.webhookCertificate" -}}
{{- printf "%s-webhook" (include "dgdr.fullname" .) -}}
{{- end -}}

{{- define "dgdr.webhookCertManagerSecret" -}}
{{- printf "%s-webhook-cert-cm" (include "dgdr.fullname" .) -}}
{{- end -}}

{{- define "dgdr.webhookCertDir" -}}
/etc/dgdr-controller/webhook-certs
{{- end -}}

{{/* dynamoOperatorLease "namespace/name" checked, as a list [namespace, name]; empty: []. */}}
{{- define "dgdr.dynamoOperatorLease" -}}
{{- with .Values.dynamoOperatorLease -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$" .) -}}
{{- fail (printf "dynamoOperatorLease must be namespace/name or empty, got %q" .) -}}
{{- end -}}
{{- splitList "/" . | toJson -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}
