{{/* Chart name, truncated to the 63 characters Kubernetes allows in names and label values. */}}
{{- define "mlrollouts.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name: the release name, plus the chart name unless it already contains it. */}}
{{- define "mlrollouts.fullname" -}}
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

{{- define "mlrollouts.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "mlrollouts.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of the operator pods; immutable once installed. */}}
{{- define "mlrollouts.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlrollouts.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "mlrollouts.gatewaySelectorLabels" -}}
app.kubernetes.io/name: {{ include "mlrollouts.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "mlrollouts.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mlrollouts.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mlrollouts.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Without sharding, peering is required as soon as two replicas could act on the same experiment. */}}
{{- define "mlrollouts.peeringEnabled" -}}
{{- if and (not .Values.sharding.enabled) (or .Values.peering.enabled (gt (int .Values.replicaCount) 1)) }}true{{ end }}
{{- end }}

{{/* Sharding arguments, after checking what the operator would refuse anyway, with the value to change. */}}
{{- define "mlrollouts.shardingArgs" -}}
{{- $s := .Values.sharding }}
{{- if lt (int $s.shards) (int .Values.replicaCount) }}
{{- fail (printf "sharding.shards (%d) must be at least replicaCount (%d): a replica without a shard does nothing" (int $s.shards) (int .Values.replicaCount)) }}
{{- end }}
{{- if not (and (lt (float64 $s.retryPeriod) (float64 $s.renewDeadline)) (lt (float64 $s.renewDeadline) (float64 $s.leaseDuration))) }}
{{- fail "sharding: retryPeriod < renewDeadline < leaseDuration is required (a holder must stop writing before others may take over)" }}
{{- end }}
- --shards={{ $s.shards }}
- --lease-duration={{ $s.leaseDuration }}
- --renew-deadline={{ $s.renewDeadline }}
- --retry-period={{ $s.retryPeriod }}
{{- end }}

{{/*
Rules the operator needs wherever it manages experiments (contracts: modelexperiments and status,
routing kinds, Deployments scale, Events, and Secrets only by the names in prometheus.secretNames and notifications.secretNames). Used by the ClusterRole and each Role.
*/}}
{{- define "mlrollouts.experimentRules" -}}
- apiGroups: ["mlrollouts.dev"]
  resources: ["modelexperiments", "modelexperiments/status"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["mlrollouts.dev"]
  resources: ["metrictemplates"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- /* Routes and replicas are written by server-side apply (PATCH, field manager mlrollouts): no PUT. */}}
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["serving.kserve.io"]
  resources: ["inferenceservices"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["get", "patch"]
{{- with concat .Values.prometheus.secretNames .Values.notifications.secretNames | uniq }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
  resourceNames: {{ toJson . }}
{{- end }}
{{- end }}
