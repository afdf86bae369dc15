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
{{- if eq (.Values.redis.external.mode | default "standalone") "cluster" }}
{{- $_ := set $redis "mode" "cluster" }}
{{- end }}
{{- if .Values.redis.external.waitReplicas }}
{{- $_ := set $redis "waitReplicas" (.Values.redis.external.waitReplicas | int) }}
{{- end }}
{{- $spec := dict
  "image" (include "fleetcast.image" (dict "image" $g.image "root" .))
  "imagePullPolicy" $g.image.pullPolicy
  "service" $g.service
  "replicas" $g.replicas
  "autoscaling" $g.autoscaling
  "drain" $g.drain
  "rebalance" $g.rebalance
  "redis" $redis
  "resources" $g.resources
}}
{{- $a := $g.auth }}
{{- $auth := dict "defaultAnonymous" $a.defaultAnonymous "tokenCookie" $a.tokenCookie }}
{{- if $a.allowedOrigins }}
{{- $_ := set $auth "allowedOrigins" $a.allowedOrigins }}
{{- end }}
{{- if $a.publishKeysSecret }}
{{- $_ := set $auth "publishKeysSecretRef" (dict "name" $a.publishKeysSecret) }}
{{- end }}
{{- $jwt := dict "leewaySeconds" $a.jwt.leewaySeconds }}
{{- if $a.jwt.secret.name }}
{{- $_ := set $jwt "secretRef" (dict "name" $a.jwt.secret.name "key" $a.jwt.secret.key) }}
{{- end }}
{{- if $a.jwt.publicKey.name }}
{{- $_ := set $jwt "publicKeySecretRef" (dict "name" $a.jwt.publicKey.name "key" $a.jwt.publicKey.key) }}
{{- end }}
{{- range $field := list "jwksUrl" "audience" "issuer" }}
{{- if index $a.jwt $field }}
{{- $_ := set $jwt $field (index $a.jwt $field) }}
{{- end }}
{{- end }}
{{- if and (or $a.jwt.secret.name $a.jwt.publicKey.name $a.jwt.jwksUrl) (not $a.allowedOrigins) }}
{{- fail "gateway.auth.allowedOrigins must list the web origins of the pages that use the gateway (for example https://app.example.com) when gateway.auth.jwt is configured: browsers carry those tokens" }}
{{- end }}
{{- $_ := set $auth "jwt" $jwt }}
{{- $_ := set $spec "auth" $auth }}
{{- if .Values.otel.endpoint }}
{{- $_ := set $spec "otel" (dict "endpoint" .Values.otel.endpoint "serviceName" .Values.otel.serviceName "sampleRatio" .Values.otel.sampleRatio) }}
{{- end }}
{{- $labels := include "fleetcast.labels" (dict "root" . "component" "gateway") | fromYaml }}
{{- $meta := dict "name" (include "fleetcast.gateway.name" .) "namespace" .Release.Namespace "labels" $labels }}
{{- dict "apiVersion" "fleetcast.dev/v1alpha1" "kind" "Gateway" "metadata" $meta "spec" $spec | toJson }}
{{- end }}
