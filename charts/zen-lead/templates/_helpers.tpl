{{/* Chart name. */}}
{{- define "zen-lead.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-zen-lead, or the release name when it already contains the chart name. */}}
{{- define "zen-lead.fullname" -}}
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

{{- define "zen-lead.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "zen-lead.labels" -}}
helm.sh/chart: {{ include "zen-lead.chart" . }}
{{ include "zen-lead.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: zen-lead
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "zen-lead.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zen-lead.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "zen-lead.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zen-lead.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "zen-lead.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Watched namespaces as a JSON list: watchNamespaces, else the release namespace when RBAC is
namespace-scoped, else [] (every namespace, cluster-scoped RBAC only).
*/}}
{{- define "zen-lead.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- .Values.watchNamespaces | uniq | toJson }}
{{- else if .Values.rbac.clusterScoped }}
{{- list | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/* Port of a HOST:PORT bind address. */}}
{{- define "zen-lead.port" -}}
{{- regexReplaceAll "^.*:" . "" }}
{{- end }}

{{/* config.yaml: every controller setting. */}}
{{- define "zen-lead.config" -}}
{{- $c := .Values.controller }}
{{- if and (gt (int .Values.replicaCount) 1) (not $c.leader_elect) }}
{{- fail "controller.leader_elect must be true when replicaCount > 1 (only one replica may write)" }}
{{- end }}
{{- if not (and (gt (float64 $c.lease_duration_seconds) (float64 $c.renew_deadline_seconds)) (gt (float64 $c.renew_deadline_seconds) (float64 $c.retry_period_seconds))) }}
{{- fail "controller: lease_duration_seconds > renew_deadline_seconds > retry_period_seconds must hold" }}
{{- end }}
{{- $cfg := dict "kubeconfig" nil "namespaces" (include "zen-lead.watchNamespaces" . | fromJsonArray) "leader_election_namespace" .Release.Namespace }}
{{- $cfg = merge $cfg (deepCopy $c) }}
{{- /* Helm drops null values; keep every setting present (null: the built-in default). */}}
{{- if not (hasKey $cfg "otlp_endpoint") }}{{- $_ := set $cfg "otlp_endpoint" nil }}{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* What the controller does in a watched namespace (read pods; write only its own objects). */}}
{{- define "zen-lead.watchRules" -}}
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end }}
