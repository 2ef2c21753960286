{{/* The release's objects are named after it; "batchcert-operator" (the kustomize names) when
the release is called that or contains the chart's name. */}}
{{- define "batchcert.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "batchcert.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "batchcert.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: the existing ServiceAccount to run as (serviceAccount.create is false)" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Every object: the kustomize labels plus Helm's own. */}}
{{- define "batchcert.labels" -}}
app.kubernetes.io/name: batchcert-operator
app.kubernetes.io/part-of: batchcert-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The operator's pods (every shard): what the metrics Service and the NetworkPolicy select. */}}
{{- define "batchcert.podSelector" -}}
app.kubernetes.io/name: batchcert-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "batchcert.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Peering is needed whenever more than one replica could act. */}}
{{- define "batchcert.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicas) 1) (gt (int .Values.shards) 1) -}}
true
{{- end -}}
{{- end -}}

{{/* The ClusterKopfPeering of shard $index (the operator derives it from --peering and the index). */}}
{{- define "batchcert.peeringName" -}}
{{- $root := index . 0 -}}{{- $shard := index . 1 -}}
{{- if eq (int $shard) 0 -}}
{{- include "batchcert.fullname" $root -}}
{{- else -}}
{{- printf "%s-shard-%d" (include "batchcert.fullname" $root) (int $shard) -}}
{{- end -}}
{{- end -}}

{{/* What the operator does to BatchCertPools and Events (a ClusterRole's or a Role's rules). */}}
{{- define "batchcert.objectRules" -}}
# Watch the objects and patch them (finalizer, kopf's annotations); never create/update/delete.
- apiGroups: [batchcert.dev]
  resources: [batchcertpools]
  verbs: [list, watch, patch]
# The status contract, written only as merge patches through the status subresource.
- apiGroups: [batchcert.dev]
  resources: [batchcertpools/status]
  verbs: [patch]
# kopf posts Events (core v1 only; it never patches or reads them).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{- /* Tenancy (docs/operating.md, "Tenancy: per-team setup"): read a namespace's ServiceAccount
for its azure.workload.identity/client-id annotation and request its token; get only (never
list or watch), create only on the token subresource. Same as deploy/base/rbac.yaml. */ -}}
{{- define "batchcert.tenancyRules" -}}
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get]
- apiGroups: [""]
  resources: [serviceaccounts/token]
  verbs: [create]
{{- end -}}
