{{/* Rules on cluster-scoped resources: kopf watches CRDs and namespaces to follow what it serves. */}}
{{- define "fleetcast.operator.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}

{{/* Rules in each watched namespace: the resources the operator reconciles, owns, reads or reports on. */}}
{{- define "fleetcast.operator.namespacedRules" -}}
- apiGroups: ["fleetcast.dev"]
  resources: ["gateways", "channels"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["fleetcast.dev"]
  resources: ["gateways/status", "channels/status"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
