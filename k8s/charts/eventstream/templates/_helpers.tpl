{{/* Names --------------------------------------------------------------- */}}

{{- define "eventstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name; "<fullname>-producer" / "-consumer" name the
     Deployments and Services (so keep room for the suffix). */}}
{{- define "eventstream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "eventstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "eventstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "eventstream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels ------------------------------------------------------------------ */}}

{{- define "eventstream.labels" -}}
helm.sh/chart: {{ include "eventstream.chart" . }}
{{ include "eventstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
eventstream.io/site: {{ .Values.site.name | quote }}
{{- end -}}

{{- define "eventstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eventstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Per component: called with (dict "root" $ "component" "producer"). */}}
{{- define "eventstream.componentLabels" -}}
{{ include "eventstream.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "eventstream.componentSelectorLabels" -}}
{{ include "eventstream.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The config file ---------------------------------------------------------
     The config keys of the values, verbatim, minus the chart's `enabled`
     switches; a disabled section is left out (= no such service on this
     site). The schema is libsync/config/config.h's. */}}
{{- define "eventstream.config" -}}
{{- $c := dict "site" .Values.site -}}
{{- if .Values.database }}{{ $_ := set $c "database" .Values.database }}{{ end -}}
{{- if .Values.log }}{{ $_ := set $c "log" .Values.log }}{{ end -}}
{{- if .Values.doctypes }}{{ $_ := set $c "doctypes" .Values.doctypes }}{{ end -}}
{{- if .Values.producer.enabled }}{{ $_ := set $c "producer" (omit .Values.producer "enabled") }}{{ end -}}
{{- if .Values.consumer.enabled }}{{ $_ := set $c "consumer" (omit .Values.consumer "enabled") }}{{ end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* The TCP port of a listen address ("0.0.0.0:50051", "[::]:50051").
     Called with (dict "address" ADDR "default" PORT "key" KEYPATH). */}}
{{- define "eventstream.port" -}}
{{- $addr := default "" .address -}}
{{- if not $addr -}}
{{- .default -}}
{{- else if hasPrefix "unix:" $addr -}}
{{- fail (printf "%s: %q is a unix socket; in Kubernetes it must be host:port" .key $addr) -}}
{{- else -}}
{{- $port := regexFind "[0-9]+$" $addr -}}
{{- if or (not $port) (eq ($port | atoi) 0) -}}
{{- fail (printf "%s: %q: expected host:port with a fixed port (not 0)" .key $addr) -}}
{{- end -}}
{{- $port -}}
{{- end -}}
{{- end -}}

{{/* Secret env vars of a component: ES_DATABASE_URL when it comes from a
     Secret, and every secret_env / api_secret_env / value_env (webhook
     headers) that component's config section names, and the exact names
     (not the NAME_* prefixes) of producer.webhook_delivery.
     runtime_secret_env. Each comes from secrets.<VAR>, else from key <VAR> of
     existingSecret; a variable with neither fails the render. Called with
     (dict "root" $ "component" "producer"). */}}
{{- define "eventstream.secretEnv" -}}
{{- $root := .root -}}
{{- $vars := list -}}
{{- $url := "" -}}
{{- with $root.Values.database }}{{ $url = default "" .url }}{{ end -}}
{{- if or (not $url) (hasKey $root.Values.secrets "ES_DATABASE_URL") -}}
{{- $vars = append $vars "ES_DATABASE_URL" -}}
{{- end -}}
{{- $section := get $root.Values .component -}}
{{- range $section.api_keys -}}
{{- if .secret_env }}{{ $vars = append $vars .secret_env }}{{ end -}}
{{- end -}}
{{- if eq .component "producer" -}}
{{- range $section.webhooks -}}
{{- if .secret_env }}{{ $vars = append $vars .secret_env }}{{ end -}}
{{- range .headers -}}
{{- if .value_env }}{{ $vars = append $vars .value_env }}{{ end -}}
{{- end -}}
{{- end -}}
{{- with $section.webhook_delivery -}}
{{- range .runtime_secret_env -}}
{{- if not (hasSuffix "*" .) }}{{ $vars = append $vars . }}{{ end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if eq .component "consumer" -}}
{{- range $section.producers -}}
{{- if .api_secret_env }}{{ $vars = append $vars .api_secret_env }}{{ end -}}
{{- end -}}
{{- end -}}
{{- range $var := $vars | uniq }}
{{- $ref := get $root.Values.secrets $var }}
{{- if not $ref }}
{{- if not $root.Values.existingSecret }}
{{- if eq $var "ES_DATABASE_URL" }}
{{- fail "database.url is empty: set it, or give ES_DATABASE_URL through existingSecret or secrets.ES_DATABASE_URL" }}
{{- else }}
{{- fail (printf "%s: the config names the environment variable %s (secret_env / api_secret_env) but no Secret provides it: set existingSecret (a Secret with key %s) or secrets.%s: {name, key}" $.component $var $var $var) }}
{{- end }}
{{- end }}
{{- $ref = dict "name" $root.Values.existingSecret "key" $var }}
{{- end }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name | quote }}
      key: {{ $ref.key | quote }}
{{- end }}
{{- end -}}
