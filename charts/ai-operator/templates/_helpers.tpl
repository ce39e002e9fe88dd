{{/*
Labels. config/default's own labels (app.kubernetes.io/name, component, app)
are kept as they are, selectors included, so that pods, Services and alerts
select the same things whichever way the operator was installed; Helm's
standard labels are added beside them (README "Install": the differences).
*/}}
{{- define "ai-operator.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ai-operator.labels" -}}
app.kubernetes.io/name: ai-operator
{{ include "ai-operator.helmLabels" . }}
{{- end }}

{{- define "ai-operator.operatorLabels" -}}
app: ai-operator
app.kubernetes.io/name: ai-operator
app.kubernetes.io/component: operator
{{- end }}

{{- define "ai-operator.selector" -}}
app.kubernetes.io/name: ai-operator
app.kubernetes.io/component: operator
{{- end }}

{{/* Argo CD sync wave (values: argocd.syncWaves); $wave is "0" or "1". */}}
{{- define "ai-operator.wave" -}}
{{- if .root.Values.argocd.syncWaves }}
argocd.argoproj.io/sync-wave: {{ .wave | quote }}
{{- end }}
{{- end }}

{{/* metadata.annotations with the wave, or nothing. */}}
{{- define "ai-operator.annotations" -}}
{{- $w := include "ai-operator.wave" . }}
{{- if $w }}
annotations:
  {{- $w | nindent 2 }}
{{- end }}
{{- end }}

{{- define "ai-operator.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The documents of a file the chart reads from config/ through a link under
files/ (one copy: config/ stays the source). Returns a list of maps as YAML
under the key "docs".
*/}}
{{- define "ai-operator.configDocs" -}}
{{- $docs := list }}
{{- range (regexSplit "(?m)^---\\s*$" (.root.Files.Get .file) -1) }}
{{- $doc := fromYaml . }}
{{- if $doc }}{{ $docs = append $docs $doc }}{{ end }}
{{- end }}
{{- if not $docs }}{{ fail (printf "%s is empty or unreadable: it must be a link into config/ (README \"Install\")" .file) }}{{ end }}
{{- toYaml (dict "docs" $docs) }}
{{- end }}

{{/* Refuses combinations that cannot work, naming the value. */}}
{{- define "ai-operator.validate" -}}
{{- if and .Values.admission.enabled (ne .Values.config.APPROVAL_POLICY_NAME "ai-operator-approvals") }}
{{- fail "config.APPROVAL_POLICY_NAME must be ai-operator-approvals while admission.enabled=true: the chart installs the policy under that name" }}
{{- end }}
{{- if and .Values.admission.enabled (ne .Values.config.APPROVAL_POLICY_BINDING_NAME "ai-operator-approvals") }}
{{- fail "config.APPROVAL_POLICY_BINDING_NAME must be ai-operator-approvals while admission.enabled=true: the chart installs the binding under that name" }}
{{- end }}
{{- if and (not .Values.ha.enabled) (ne (int .Values.replicas) 1) }}
{{- fail (printf "replicas=%v needs ha.enabled=true: the Deployment runs one pod on one ReadWriteOnce audit spool (one spool is one hash chain); ha.enabled runs a StatefulSet with a spool per replica (set ha.replicas)" .Values.replicas) }}
{{- end }}
{{- end }}
