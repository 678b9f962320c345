{{/* Release-scoped name prefix: the release name, with the chart name unless it already has it. */}}
{{- define "stack.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The port each component's image listens on (fixed by the Dockerfiles and the gateway template). */}}
{{- define "stack.port" -}}
{{- get (dict "auth" "8001" "api" "8002" "realtime" "8003" "gateway" "8080") . -}}
{{- end -}}

{{/* Labels that select one component's pods: (list $ "auth"). */}}
{{- define "stack.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Every object's labels: (list $ "auth"). */}}
{{- define "stack.labels" -}}
{{- $root := index . 0 -}}
{{ include "stack.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version }}
{{- end -}}

{{/* A service image as `make images` tags it: [REGISTRY/]<service>-service:TAG. */}}
{{- define "stack.image" -}}
{{- $root := index . 0 -}}
{{- $repository := index $root.Values (index . 1) "image" "repository" -}}
{{- $tag := $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- if $root.Values.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $root.Values.image.registry) $repository $tag -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The restricted Pod Security Standard, pod level. */}}
{{- define "stack.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The restricted Pod Security Standard, container level, with a read-only root. */}}
{{- define "stack.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The JWKS URL api and realtime verify tokens with: auth's Service inside the cluster. */}}
{{- define "stack.jwksUrl" -}}
http://{{ include "stack.fullname" . }}-auth:{{ include "stack.port" "auth" }}/auth/.well-known/jwks.json
{{- end -}}

{{/* The environment every service shares (compose's x-service-env): (list $ "auth"). */}}
{{- define "stack.serviceEnv" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
- name: SERVICE_NAME
  value: {{ printf "%s-service" $name }}
- name: DATABASE_URL_FILE
  value: /etc/stack/database/url
- name: JWT_ISSUER
  value: {{ printf "%s/auth" (trimSuffix "/" $root.Values.publicUrl) | quote }}
- name: JWT_AUDIENCE
  value: {{ $root.Values.jwtAudience | quote }}
- name: LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
- name: FORWARDED_ALLOW_IPS
  value: {{ include "stack.forwardedAllowIps" $root | quote }}
{{- range $setting, $value := (index $root.Values $name "settings") }}
- name: {{ upper $setting }}
  value: {{ if kindIs "string" $value }}{{ $value | quote }}{{ else }}{{ $value | toJson | quote }}{{ end }}
{{- end }}
{{- range $setting, $ref := (index $root.Values $name "secretSettings") }}
- name: {{ upper $setting }}_FILE
  value: {{ printf "/etc/stack/secrets/%s/value" $setting }}
{{- end }}
{{- end -}}

{{/* Secrets reach the services as files (servicekit.settings: `<NAME>_FILE`), never as
environment variables, which every child process inherits and /proc/<pid>/environ shows:
the database URL, and each of the service's secretSettings. (list $ "auth") */}}
{{- define "stack.secretMounts" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
- name: database-url
  mountPath: /etc/stack/database
  readOnly: true
{{- range $setting, $ref := (index $root.Values $name "secretSettings") }}
- name: {{ printf "secret-%s" ($setting | replace "_" "-") }}
  mountPath: {{ printf "/etc/stack/secrets/%s" $setting }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "stack.secretVolumes" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
- name: database-url
  secret:
    secretName: {{ $root.Values.database.existingSecret }}
    items:
      - key: {{ $root.Values.database.urlKey }}
        path: url
    defaultMode: 0440
{{- range $setting, $ref := (index $root.Values $name "secretSettings") }}
- name: {{ printf "secret-%s" ($setting | replace "_" "-") }}
  secret:
    secretName: {{ $ref.secret }}
    items:
      - key: {{ $ref.key }}
        path: value
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/* One service's migration step: its image's own migrations, `python -m servicekit.migrate`
(api's image also carries the event log's, which run after api's: docs/contract.md §6). */}}
{{- define "stack.migrationContainer" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
- name: migrate-{{ $name }}
  image: {{ include "stack.image" (list $root $name) }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command: ["python", "-m", "servicekit.migrate", "/app/migrations"{{ if eq $name "api" }}, "/app/eventlog-migrations"{{ end }}]
  env:
    - name: DATABASE_URL_FILE
      value: /etc/stack/database/url
  resources:
    {{- toYaml $root.Values.migrations.resources | nindent 4 }}
  securityContext:
    {{- include "stack.containerSecurityContext" $root | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: database-url
      mountPath: /etc/stack/database
      readOnly: true
{{- end -}}

{{/* Egress to DNS, wherever the cluster's resolver is. */}}
{{- define "stack.dnsEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end -}}

{{/* Egress to PostgreSQL: networkPolicy.postgres.to, or any address on its port. */}}
{{- define "stack.postgresEgress" -}}
- ports:
    - port: {{ .Values.networkPolicy.postgres.port }}
      protocol: TCP
  {{- with .Values.networkPolicy.postgres.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* Whom uvicorn trusts X-Forwarded-* from. Empty forwardedAllowIps: every peer the
NetworkPolicies let connect, which is the gateway alone (api and realtime also reach auth, and
send no forwarded headers); gateway pods' addresses are not known in advance, so the policy,
not an address list, is what narrows it. Without the policies that would be every pod of the
cluster: then an explicit list is required. */}}
{{- define "stack.forwardedAllowIps" -}}
{{- if .Values.forwardedAllowIps -}}
{{- .Values.forwardedAllowIps -}}
{{- else if .Values.networkPolicy.enabled -}}
*
{{- else -}}
{{- fail "forwardedAllowIps: with networkPolicy.enabled false, name the addresses the gateway's pods have (your pod CIDR)" -}}
{{- end -}}
{{- end -}}
