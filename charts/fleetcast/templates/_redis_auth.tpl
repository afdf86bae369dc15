{{/*
Redis ACL users of the in-release Redis (redis.auth). One user per Gateway, confined to that Gateway's keys
(fc:<namespace>/<gateway>:..., see fleetcast/contract/keys.py) and to the commands a gateway pod sends; one
operator user; the default user off. Neither may run FLUSHALL, CONFIG, SCRIPT, KEYS or DEBUG: those are never
added. Passwords appear in the ACL file only as SHA-256 hashes.
*/}}

{{- define "fleetcast.redis.auth.enabled" -}}
{{- if and .Values.redis.enabled .Values.redis.auth.enabled }}true{{ end }}
{{- end }}

{{- define "fleetcast.redis.auth.secretName" -}}
{{- default (printf "%s-auth" (include "fleetcast.redis.fullname" .)) .Values.redis.auth.existingSecret }}
{{- end }}

{{/*
What a gateway pod sends (fleetcast/broker/redis_*.py): PING, CLIENT ID and CLIENT UNBLOCK on its connections,
the publish/read/meta scripts by EVALSHA (EVAL after a restart emptied the script cache; SCRIPT itself is not
granted) and what they call, XREAD and XREVRANGE on the control stream, SUBSCRIBE to notifications and policy
changes, HSET/HDEL/HGETALL for heartbeats and policies, PEXPIRE (stream idle TTLs and the write probe), PERSIST
(a family whose idleTtl is none keeps its streams forever). Presence: HSET/HGET/HDEL/HINCRBY in its scripts, HSCAN
and HLEN for reads, SADD/SREM/SMEMBERS/DEL on each pod's presence-of:<pod> set (what to clean when a pod dies).
Keys: channel streams and idempotency records ("{channel}") and the pod registry read-write, the write probe
read-write, policies and the control stream read-only (only the operator writes them).
*/}}
{{- define "fleetcast.redis.acl.gatewayUser" -}}
{{- $prefix := printf "fc:%s/%s:" .namespace .name -}}
user gateway.{{ .namespace }}.{{ .name }} on #{{ .password | sha256sum }} resetkeys resetchannels ~{{ $prefix }}{* %RW~{{ $prefix }}pods %RW~{{ $prefix }}probe %RW~{{ $prefix }}presence-of:* %R~{{ $prefix }}policies %R~{{ $prefix }}control &{{ $prefix }}* -@all +ping +select +client|id +client|unblock +evalsha +eval +exists +xinfo|stream +xadd +xtrim +xlen +xrange +xrevrange +xread +xsetid +time +get +set +pexpire +expire +persist +publish +subscribe +unsubscribe +hset +hdel +hgetall +hget +hlen +hscan +hincrby +sadd +srem +smembers +del
{{- end }}

{{/*
What the operator sends (fleetcast_operator/fleet_redis.py, and `fleetcast channel` by hand): heartbeats read,
policies written and announced in one MULTI, drain commands appended, stream statistics by SCAN and XINFO.
*/}}
{{- define "fleetcast.redis.acl.operatorUser" -}}
user operator on #{{ .password | sha256sum }} resetkeys resetchannels %R~fc:* %RW~fc:*:policies %RW~fc:*:control &fc:* -@all +ping +select +hget +hgetall +hset +hdel +publish +multi +exec +discard +xadd +scan +xinfo|stream
{{- end }}

{{- define "fleetcast.redis.url.as" -}}
{{- printf "redis://%s:%s@%s.%s.svc:6379/%d" .user .password (include "fleetcast.redis.fullname" .root) .root.Release.Namespace (int .root.Values.redis.database) }}
{{- end }}

{{/* redis-cli ping, as the operator user when the default user is off (REDISCLI_AUTH holds its password). */}}
{{- define "fleetcast.redis.probe" -}}
{{- if include "fleetcast.redis.auth.enabled" . }}["redis-cli", "--user", "operator", "ping"]{{ else }}["redis-cli", "ping"]{{ end }}
{{- end }}
