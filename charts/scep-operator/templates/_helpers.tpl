{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "scep-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or the release name when it already contains
the chart name, or fullnameOverride.
*/}}
{{- define "scep-operator.fullname" -}}
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

{{/*
chart label value: <name>-<version>.
*/}}
{{- define "scep-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "scep-operator.labels" -}}
helm.sh/chart: {{ include "scep-operator.chart" . }}
{{ include "scep-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scep-operator
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "scep-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scep-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "scep-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scep-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator's ServiceAccount as an RBAC subject.
*/}}
{{- define "scep-operator.subject" -}}
- kind: ServiceAccount
  name: {{ include "scep-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
The manager image reference: repository@digest, or repository:tag.
*/}}
{{- define "scep-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The cluster resource namespace (--cluster-resource-namespace): the value, or
the release namespace.
*/}}
{{- define "scep-operator.clusterResourceNamespace" -}}
{{- .Values.clusterResourceNamespace | default .Release.Namespace }}
{{- end }}

{{/*
"true" when leader election is on: leaderElection.enabled or more than one
replica. Empty otherwise.
*/}}
{{- define "scep-operator.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
"true" when the PodDisruptionBudget is rendered: podDisruptionBudget.enabled
or more than one replica.
*/}}
{{- define "scep-operator.pdbEnabled" -}}
{{- if or .Values.podDisruptionBudget.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
The namespaces where the operator may get/create/patch Secrets, as a JSON
list: the release namespace, the cluster resource namespace and
rbac.secretNamespaces, without duplicates.
*/}}
{{- define "scep-operator.secretNamespaces" -}}
{{- $nss := list .Release.Namespace (include "scep-operator.clusterResourceNamespace" .) }}
{{- $nss = concat $nss (.Values.rbac.secretNamespaces | default list) }}
{{- $nss | uniq | toJson }}
{{- end }}

{{/*
The metrics port: 8443, named https, with metrics.secure; 8080, named http,
without.
*/}}
{{- define "scep-operator.metricsPort" -}}
{{- if .Values.metrics.secure }}8443{{ else }}8080{{ end }}
{{- end }}

{{- define "scep-operator.metricsPortName" -}}
{{- if .Values.metrics.secure }}https{{ else }}http{{ end }}
{{- end }}

{{/*
Where the metrics.certSecret volume is mounted: --metrics-cert-path.
*/}}
{{- define "scep-operator.metricsCertPath" -}}
/var/run/secrets/scep-operator/metrics-certs
{{- end }}

{{/*
"true" when metrics.certSecret is mounted (metrics on, secure, a Secret
given). Empty otherwise.
*/}}
{{- define "scep-operator.metricsCertMounted" -}}
{{- if and .Values.metrics.enabled .Values.metrics.secure .Values.metrics.certSecret }}true{{ end }}
{{- end }}

{{/*
Labels of the helm test's objects: not the selector labels, so that neither
the Deployment nor the metrics Service selects the test Pod.
*/}}
{{- define "scep-operator.testLabels" -}}
helm.sh/chart: {{ include "scep-operator.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scep-operator
app.kubernetes.io/component: helm-test
{{- end }}
