{{/*
The operator's rules: exactly fleetcast_operator.rbac.REQUIRED_PERMISSIONS (tests/chart/test_rbac.py compares).
kopf runs standalone with CRD and namespace scanning off, so nothing cluster-scoped is needed. Secrets are read
only by name: the ones the chart's Gateway names, and operator.rbac.secretNames.
*/}}
{{- define "fleetcast.operator.rules" -}}
# kopf: watch the resources it serves; patch them for finalizers, progress annotations and status.
- apiGroups: ["fleetcast.dev"]
  resources: ["gateways"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["fleetcast.dev"]
  resources: ["channels"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["fleetcast.dev"]
  resources: ["gateways/status", "channels/status"]
  verbs: ["patch"]
# The children of a Gateway, which the operator owns.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch"]
# The pod-deletion-cost annotation on the pods chosen for a scale-down.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["patch"]
{{- with (include "fleetcast.operator.secretNames" . | fromJsonArray) }}
# A Gateway's redis.secretRef, by name only.
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: {{ toJson . }}
  verbs: ["get"]
{{- end }}
# kopf's events about handler progress and errors.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* The Secrets the operator may read (JSON list): the chart's Gateway's, then operator.rbac.secretNames. */}}
{{- define "fleetcast.operator.secretNames" -}}
{{- $names := list }}
{{- if include "fleetcast.redis.auth.enabled" . }}
{{- $names = append $names (include "fleetcast.redis.auth.secretName" .) }}
{{- else if .Values.redis.existingSecret }}
{{- $names = append $names .Values.redis.existingSecret }}
{{- end }}
{{- $names = concat $names .Values.operator.rbac.secretNames | uniq }}
{{- toJson $names }}
{{- end }}

{{/* The namespaces the operator serves (JSON list); empty means every namespace (watchAllNamespaces). */}}
{{- define "fleetcast.operator.namespaces" -}}
{{- if .Values.operator.watchAllNamespaces }}[]
{{- else }}{{ toJson (default (list .Release.Namespace) .Values.operator.watchNamespaces) }}
{{- end }}
{{- end }}
