{{/* The chart name, truncated to 63 characters (a label value's limit). */}}
{{- define "apitoken-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: the release name, followed by the chart name unless the release name contains it already.
Truncated to 63 characters (DNS label limit for some objects' names).
*/}}
{{- define "apitoken-operator.fullname" -}}
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

{{/* The namespace everything namespaced goes into. */}}
{{- define "apitoken-operator.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "apitoken-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "apitoken-operator.labels" -}}
helm.sh/chart: {{ include "apitoken-operator.chart" . }}
{{ include "apitoken-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the operator's pods; never change them (a Deployment's selector is immutable). */}}
{{- define "apitoken-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "apitoken-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "apitoken-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "apitoken-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest when a digest is given, else repository:tag. */}}
{{- define "apitoken-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "apitoken-operator.peeringName" -}}
{{- default (include "apitoken-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{/* NAMESPACE/SECRET of the default connection, or nothing. */}}
{{- define "apitoken-operator.defaultConnection" -}}
{{- with .Values.defaultConnection.existingSecret }}
{{- printf "%s/%s" (default (include "apitoken-operator.namespace" $) $.Values.defaultConnection.namespace) . }}
{{- end }}
{{- end }}

{{/* True (non-empty) when a watched namespace is a pattern rather than an exact name. */}}
{{- define "apitoken-operator.hasNamespaceGlobs" -}}
{{- range .Values.watchNamespaces }}
{{- if regexMatch "[*?\\[\\]!]" . }}true{{ end }}
{{- end }}
{{- end }}

{{/* Combinations the schema cannot express; rendered (and failing) from the Deployment. */}}
{{- define "apitoken-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.peering.enabled) }}
{{- fail "replicaCount > 1 needs peering.enabled: without peering every replica would act on every ApiToken" }}
{{- end }}
{{- if and (eq .Values.rbac.scope "namespaces") (empty .Values.watchNamespaces) }}
{{- fail "rbac.scope=namespaces needs watchNamespaces: the namespaces to create Roles in" }}
{{- end }}
{{- if and (eq .Values.rbac.scope "namespaces") (include "apitoken-operator.hasNamespaceGlobs" .) }}
{{- fail "rbac.scope=namespaces needs exact names in watchNamespaces (a Role cannot be created for a glob); use rbac.scope=cluster for patterns" }}
{{- end }}
{{- if and .Values.peering.enabled (include "apitoken-operator.hasNamespaceGlobs" .) }}
{{- fail "peering.enabled needs exact names in watchNamespaces: a KopfPeering is created in each one" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- $networkPolicy := .Values.networkPolicy | default dict }}
{{- if and $networkPolicy.enabled (empty (dig "apiServer" "cidrs" list $networkPolicy)) }}
{{- fail "networkPolicy.enabled needs networkPolicy.apiServer.cidrs: the addresses of the API server's endpoints (kubectl get endpoints kubernetes -n default)" }}
{{- end }}
{{- end }}

{{/*
The rules on ApiTokens, their Secrets and Events: wherever the operator works (ClusterRole, or a Role per
watched namespace). docs/rbac.md gives the reason for each; tests/operator/test_rbac.py proves them.
*/}}
{{- define "apitoken-operator.workloadRules" -}}
# ApiTokens: watched (list, watch), read for out-of-band reconciles (get), finalizer and kopf's
# annotations written (patch).
- apiGroups: ["dynatrace.apitokens.io"]
  resources: ["apitokens"]
  verbs: ["get", "list", "watch", "patch"]
# The status (observedGeneration, conditions, token id and dates): a merge patch of the subresource.
- apiGroups: ["dynatrace.apitokens.io"]
  resources: ["apitokens/status"]
  verbs: ["patch"]
# The Secrets the operator writes carry an ownerReference with blockOwnerDeletion=true, which clusters
# running the OwnerReferencesPermissionEnforcement admission plugin (e.g. OpenShift) allow only to those
# who may update the owner's finalizers.
- apiGroups: ["dynatrace.apitokens.io"]
  resources: ["apitokens/finalizers"]
  verbs: ["update"]
# Secrets: connection Secrets read (get); token Secrets created, replaced on rotation (update), their
# labels and annotations restored (patch), moved or released (delete), and watched so that an edit or a
# deletion by someone else is repaired at once (list, watch).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Events recording what the operator did (kopf posts them through the core/v1 API).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* kopf's peering objects: watched, and patched with the operator's keep-alive. */}}
{{- define "apitoken-operator.peeringRules" -}}
- apiGroups: ["kopf.dev"]
  resources: [{{ if .Values.watchNamespaces }}"kopfpeerings"{{ else }}"clusterkopfpeerings"{{ end }}]
  verbs: ["list", "watch", "patch"]
{{- end }}

{{/*
What kopf reads cluster-wide: CRDs (to notice the ApiToken CRD appear or change without a restart) and,
when namespaces are given, the namespaces (to match names and globs as namespaces come and go).
*/}}
{{- define "apitoken-operator.discoveryRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}

{{/*
Values added after chart 0.1.0 are read through these helpers (or with `default`/`dig` where used), each
with the same default as values.yaml: `helm upgrade --reuse-values` from an older release renders with that
release's values only, without the keys added since (docs/upgrade.md). tests/manifests/test_chart.py
renders every earlier values.yaml this way.
*/}}
{{- define "apitoken-operator.revisionHistoryLimit" -}}
{{- if hasKey .Values "revisionHistoryLimit" }}{{ .Values.revisionHistoryLimit }}{{ else }}3{{ end }}
{{- end }}

{{/* serviceAccount.automount: whether the ServiceAccount's token is mounted (the operator needs one). */}}
{{- define "apitoken-operator.automountToken" -}}
{{- dig "automount" true (.Values.serviceAccount | default dict) }}
{{- end }}

{{/*
The pod's pull secrets as a YAML list: global.imagePullSecrets, then the chart's own imagePullSecrets, each
name once. Entries are {name: ...} objects; plain strings are accepted too (as other charts' globals use).
*/}}
{{- define "apitoken-operator.imagePullSecrets" -}}
{{- $global := dig "imagePullSecrets" list (.Values.global | default dict) }}
{{- $names := list }}
{{- range concat $global (.Values.imagePullSecrets | default list) }}
{{- $name := "" }}
{{- if kindIs "string" . }}{{ $name = . }}{{ else if kindIs "map" . }}{{ $name = dig "name" "" . }}{{ end }}
{{- if and $name (not (has $name $names)) }}
{{- $names = append $names $name }}
{{- end }}
{{- end }}
{{- $secrets := list }}
{{- range $names }}
{{- $secrets = append $secrets (dict "name" .) }}
{{- end }}
{{- toYaml $secrets }}
{{- end }}

{{/* podDisruptionBudget, with the defaults of values.yaml. */}}
{{- define "apitoken-operator.podDisruptionBudget" -}}
{{- $pdb := .Values.podDisruptionBudget | default dict }}
{{- $enabled := dig "enabled" true $pdb }}
{{- $minAvailable := dig "minAvailable" 1 $pdb }}
{{- $maxUnavailable := dig "maxUnavailable" "" $pdb }}
{{- toYaml (dict "enabled" $enabled "minAvailable" $minAvailable "maxUnavailable" $maxUnavailable) }}
{{- end }}
