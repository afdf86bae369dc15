{{/*
The operator's rules: exactly fleetcast_operator.rbac.REQUIRED_PERMISSIONS (tests/chart/test_rbac.py compares).
kopf runs standalone with CRD and namespace scanning off, so nothing cluster-scoped is needed.
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
# A Gateway's redis.secretRef.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# kopf's events about handler progress and errors.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
