{{/*
The default Gateway resource, as a dict. The operator turns it into the gateway Deployment, Service and
PodDisruptionBudget; its spec follows manifests/crds/gateways.fleetcast.dev.yaml.
*/}}
{{- define "fleetcast.gateway.manifest" -}}
{{- $g := .Values.gateway }}
{{- $redis := dict }}
{{- if include "fleetcast.redis.auth.enabled" . }}
{{- $_ := set $redis "secretRef" (dict "name" (include "fleetcast.redis.auth.secretName" .) "key" "gateway-url" "operatorKey" "operator-url") }}
{{- else if .Values.redis.existingSecret }}
{{- $_ := set $redis "secretRef" (dict "name" .Values.redis.existingSecret "key" .Values.redis.existingSecretUrlKey) }}
{{- else }}
{{- $_ := set $redis "url" (include "fleetcast.redis.url" .) }}
{{- end }}
{{- $spec := dict
  "image" (include "fleetcast.image" (dict "image" $g.image "root" .))
  "imagePullPolicy" $g.image.pullPolicy
  "service" $g.service
  "replicas" $g.replicas
  "autoscaling" $g.autoscaling
  "drain" $g.drain
  "redis" $redis
  "resources" $g.resources
}}
{{- if .Values.otel.endpoint }}
{{- $_ := set $spec "otel" (dict "endpoint" .Values.otel.endpoint "serviceName" .Values.otel.serviceName "sampleRatio" .Values.otel.sampleRatio) }}
{{- end }}
{{- $labels := include "fleetcast.labels" (dict "root" . "component" "gateway") | fromYaml }}
{{- $meta := dict "name" (include "fleetcast.gateway.name" .) "namespace" .Release.Namespace "labels" $labels }}
{{- dict "apiVersion" "fleetcast.dev/v1alpha1" "kind" "Gateway" "metadata" $meta "spec" $spec | toJson }}
{{- end }}
