{{/* Names, labels and the small computed values every template shares. */}}

{{- define "fleetcast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-fleetcast", or the release name when it already contains the chart name. */}}
{{- define "fleetcast.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "fleetcast.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource; `component` is passed as a dict key. */}}
{{- define "fleetcast.labels" -}}
helm.sh/chart: {{ include "fleetcast.chart" .root }}
{{ include "fleetcast.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: fleetcast
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "fleetcast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fleetcast.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "fleetcast.operator.fullname" -}}
{{- printf "%s-operator" (include "fleetcast.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fleetcast.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "fleetcast.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fleetcast.redis.fullname" -}}
{{- printf "%s-redis" (include "fleetcast.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fleetcast.gateway.name" -}}
{{- default (include "fleetcast.fullname" .) .Values.gateway.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels the operator puts on the gateway pods and Service it creates from a Gateway (selector_labels in
fleetcast_operator/gateway/resources.py); the NetworkPolicy and the ServiceMonitor select on them.
*/}}
{{- define "fleetcast.gateway.selectorLabels" -}}
app.kubernetes.io/name: fleetcast
app.kubernetes.io/component: gateway
app.kubernetes.io/instance: {{ include "fleetcast.gateway.name" . }}
{{- end }}

{{/* The operator names a Gateway's Deployment, Service and PodDisruptionBudget "<gateway>-gateway". */}}
{{- define "fleetcast.gateway.serviceName" -}}
{{- printf "%s-gateway" (include "fleetcast.gateway.name" .) }}
{{- end }}

{{/* "repository:tag" or "repository@digest"; `image` and `root` are passed as dict keys. */}}
{{- define "fleetcast.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* Fails the render when no Redis is configured, so a broken release never reaches the cluster. */}}
{{- define "fleetcast.redis.validate" -}}
{{- if and (not .Values.redis.enabled) (not .Values.redis.external.url) (not .Values.redis.existingSecret) }}
{{- fail "redis: set redis.enabled=true, or redis.external.url, or redis.existingSecret" }}
{{- end }}
{{- if and .Values.redis.existingSecretPasswordKey (not .Values.redis.existingSecret) }}
{{- fail "redis.existingSecretPasswordKey needs redis.existingSecret" }}
{{- end }}
{{- if and (include "fleetcast.redis.auth.enabled" .) .Values.redis.existingSecretPasswordKey }}
{{- fail "redis.existingSecretPasswordKey (one shared password) and redis.auth (ACL users) exclude each other: set redis.auth.enabled=false to keep the shared password" }}
{{- end }}
{{- if and (include "fleetcast.redis.auth.enabled" .) .Values.redis.existingSecret }}
{{- fail "with redis.auth the Gateway's Redis URL comes from the auth Secret: unset redis.existingSecret, or set redis.auth.existingSecret" }}
{{- end }}
{{- if and .Values.redis.enabled (eq (.Values.redis.external.mode | default "standalone") "cluster") }}
{{- fail "redis.external.mode=cluster needs an external Redis Cluster: set redis.enabled=false and give the seed list in redis.existingSecret (or redis.external.url)" }}
{{- end }}
{{- if and .Values.redis.existingSecretPasswordKey (not .Values.redis.enabled) }}
{{- fail "redis.existingSecretPasswordKey sets the password of the in-release Redis; it needs redis.enabled=true" }}
{{- end }}
{{- end }}

{{/* The Redis URL a Gateway gets when it is not in a Secret: redis.external.url, or the in-release Redis. */}}
{{- define "fleetcast.redis.url" -}}
{{- if .Values.redis.external.url }}
{{- .Values.redis.external.url }}
{{- else }}
{{- printf "redis://%s.%s.svc:6379/%d" (include "fleetcast.redis.fullname" .) .Release.Namespace (int .Values.redis.database) }}
{{- end }}
{{- end }}

{{/* Pull secrets shared by every pod the chart creates. */}}
{{- define "fleetcast.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The non-root, read-only, no-capabilities context of the chart's short-lived hook pods. */}}
{{- define "fleetcast.hook.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "fleetcast.hook.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end }}
