{{/* The pod template of the Deployment and of the StatefulSet (config/manager/manager.yaml). */}}
{{- define "ai-operator.pod" -}}
metadata:
  labels:
    {{- include "ai-operator.operatorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}{{ toYaml . | nindent 4 }}{{ end }}
  annotations:
    # A configuration change takes a restart (src/config.ts reads it once).
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- with .Values.podAnnotations }}{{ toYaml . | nindent 4 }}{{ end }}
spec:
  serviceAccountName: ai-operator
  # In flight: finish the current reconciles, flush Events, close etcd/NATS (src/main.ts).
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    runAsNonRoot: true
    # The image's user `node` (Dockerfile).
    runAsUser: 1000
    runAsGroup: 1000
    # Makes the audit spool volume writable for that user.
    fsGroup: 1000
    seccompProfile:
      type: RuntimeDefault
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets: {{ toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector: {{ toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations: {{ toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity: {{ toYaml .Values.affinity | nindent 4 }}
  {{- else if .Values.ha.enabled }}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "ai-operator.selector" . | nindent 16 }}
  {{- end }}
  containers:
    - name: operator
      image: {{ include "ai-operator.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      ports:
        - name: http
          containerPort: 8080
          protocol: TCP
      envFrom:
        - configMapRef:
            name: ai-operator-config
      env:
        # The replica's identity in the leader key and in every log line and audit record.
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        # Fixed by the volume mount and the probes, not configuration.
        - name: AUDIT_FALLBACK_DIR
          value: /var/lib/ai-operator/audit
        - name: HTTP_PORT
          value: "8080"
        # Credentials by reference only (values: secret).
        {{- range list "GITHUB_TOKEN" "GITHUB_APP_ID" "GITHUB_APP_INSTALLATION_ID" "GITHUB_APP_PRIVATE_KEY" "ARGOCD_TOKEN" "ELASTICSEARCH_API_KEY" "OTEL_EXPORTER_OTLP_HEADERS" }}
        - name: {{ . }}
          valueFrom:
            secretKeyRef: {name: {{ $.Values.secret.name }}, key: {{ required (printf "secret.keys.%s: the Secret's key for %s" . .) (get $.Values.secret.keys .) }}, optional: true}
        {{- end }}
      resources: {{ toYaml .Values.resources | nindent 8 }}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: [ALL]
      startupProbe: {{ toYaml .Values.probes.startup | nindent 8 }}
      livenessProbe: {{ toYaml .Values.probes.liveness | nindent 8 }}
      readinessProbe: {{ toYaml .Values.probes.readiness | nindent 8 }}
      volumeMounts:
        - name: audit-spool
          mountPath: /var/lib/ai-operator/audit
        - name: tmp
          mountPath: /tmp
  volumes:
    {{- if not .Values.ha.enabled }}
    - name: audit-spool
      persistentVolumeClaim:
        claimName: ai-operator-audit-spool
    {{- end }}
    # The root filesystem is read-only; nothing the operator keeps lives here.
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
{{- end }}
