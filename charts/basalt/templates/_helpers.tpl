{{/* Names, labels and the rules read from files/ (byte copies of config/, made by `make chart`). */}}

{{- define "basalt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: <release>-basalt, or the release name when it already says basalt. */}}
{{- define "basalt.fullname" -}}
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

{{- define "basalt.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "basalt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "basalt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end }}

{{- define "basalt.labels" -}}
helm.sh/chart: {{ include "basalt.chart" . }}
{{ include "basalt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: basalt
{{- end }}

{{- define "basalt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "basalt.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "basalt.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "true" when the pod runs in the node's network namespace: asked for, or needed by PXE. */}}
{{- define "basalt.hostNetwork" -}}
{{- if or .Values.hostNetwork .Values.pxe.enabled }}true{{ end }}
{{- end }}

{{/*
The rules of the object of kind $kind named $name in files/rbac/$file (several YAML documents may
share a file). Fails when it is missing, so a renamed object in config/rbac cannot go unnoticed.
*/}}
{{- define "basalt.rules" -}}
{{- $root := index . 0 }}{{ $file := index . 1 }}{{ $kind := index . 2 }}{{ $name := index . 3 }}
{{- $content := $root.Files.Get (printf "files/rbac/%s" $file) }}
{{- if not $content }}{{ fail (printf "files/rbac/%s is missing: run make chart" $file) }}{{ end }}
{{- $found := "" }}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" $content -1 }}
{{- $obj := fromYaml $doc }}
{{- if and (eq (toString (dig "kind" "" $obj)) $kind) (eq (toString (dig "metadata" "name" "" $obj)) $name) }}
{{- $found = toYaml $obj.rules }}
{{- end }}
{{- end }}
{{- if not $found }}{{ fail (printf "files/rbac/%s has no %s %s: run make chart" $file $kind $name) }}{{ end }}
{{- $found }}
{{- end }}
