#!/usr/bin/env bash
# Builds (or reuses) the binaries the tests run: etcd, kube-apiserver, kube-proxy, kubectl, helm,
# promtool.
#
# Each Go module under tests/controlplane/ is built into a cache directory outside the repo,
# keyed by its pinned versions, the Go version and a hash of its go.mod/go.sum and this script,
# so a reused machine skips the build and a version bump rebuilds. The finished binaries are
# linked into "$cache/bin", which the Python harness (zenlead.testing.assets) looks up.
#
# Usage: tests/controlplane/build.sh            build what is missing, print the bin directory
# Env:   ZEN_LEAD_CACHE_DIR   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/zen-lead)
#        ZEN_LEAD_ASSETS / KUBEBUILDER_ASSETS   a directory that already holds etcd and
#                             kube-apiserver: the control-plane build is skipped and only what
#                             that directory lacks (kubectl, kube-proxy, helm, promtool) is
#                             built.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${ZEN_LEAD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/zen-lead}
gover=$(go env GOVERSION)
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)

log() { printf 'controlplane: %s\n' "$*" >&2; }

fail() {
  log "FAILED: $1"
  log "retry with: bash tests/controlplane/build.sh   (log: $2)"
  exit 1
}

# key MODULE_DIR LABEL -> a cache key that changes with the pins, Go and the build recipe.
key() {
  local sum
  sum=$(cat "$1/go.mod" "$1/go.sum" "$here/build.sh" "$here/versions.env" | sha256sum | cut -c1-12)
  printf '%s-%s-%s' "$2" "$gover" "$sum"
}

# build_module DIR LABEL -- GO_BUILD_ARGS... : runs each go build in DIR unless its output exists.
# GO_TAGS (optional, set for the call) is passed to every go build of that module as -tags.
build_module() {
  local dir=$1 label=$2 tags=${GO_TAGS:-} out
  shift 3
  out="$cache/$(key "$dir" "$label")"
  if [ -f "$out/.complete" ]; then
    log "reusing $out"
    printf '%s\n' "$out"
    return
  fi
  log "building $label into $out (cold builds take minutes; see docs/development.md)"
  rm -rf "$out.tmp" && mkdir -p "$out.tmp/bin"
  local logf="$cache/build-$label.log"
  (
    cd "$dir"
    export CGO_ENABLED=0 GOFLAGS="-buildvcs=false${tags:+ -tags=$tags}"
    while [ $# -gt 0 ]; do
      # Each step is "OUTPUT PACKAGE LDFLAGS", separated by "--".
      local o=$1 p=$2 l=$3
      shift 3
      [ "${1:-}" = "--" ] && shift
      log "  go build $p"
      go build -o "$out.tmp/bin/$o" -ldflags "-s -w $l" "$p"
    done
  ) >"$logf" 2>&1 || fail "go build of $label" "$logf"
  touch "$out.tmp/.complete"
  rm -rf "$out" && mv "$out.tmp" "$out"
  printf '%s\n' "$out"
}

kube_ldflags() {
  local pkg flags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$K8S_MAJOR"
    flags+=" -X $pkg.gitMinor=$K8S_MINOR -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  printf '%s' "$flags"
}

helm_ldflags() {
  local h=helm.sh/helm/v3
  printf '%s' "-X $h/internal/version.version=$HELM_VERSION -X $h/internal/version.gitTreeState=clean \
-X $h/pkg/lint/rules.k8sVersionMajor=$K8S_MAJOR -X $h/pkg/lint/rules.k8sVersionMinor=$K8S_MINOR \
-X $h/pkg/chartutil.k8sVersionMajor=$K8S_MAJOR -X $h/pkg/chartutil.k8sVersionMinor=$K8S_MINOR"
}

# promtool prints these with --version (prometheus/common/version); the proxy does not tell the
# release's git revision, so the revision names the module version it was built from.
promtool_ldflags() {
  local v=github.com/prometheus/common/version
  printf '%s' "-X $v.Version=${PROMETHEUS_VERSION#v} -X $v.Revision=$PROMETHEUS_MODULE_VERSION \
-X $v.Branch=HEAD -X $v.BuildUser=zen-lead@build.sh -X $v.BuildDate=$build_date"
}

# require_pin DIR MODULE VERSION: the module's go.mod must require what versions.env says.
require_pin() {
  grep -Eq "^[[:space:]]*$2 $3( |\$)" "$1/go.mod" ||
    fail "$1/go.mod does not require $2 $3 (versions.env); run go get + go mod tidy there" "-"
}

mkdir -p "$cache"
command -v go >/dev/null || fail "go is not installed (need Go >= 1.26)" "-"
kl=$(kube_ldflags)
given=${ZEN_LEAD_ASSETS:-${KUBEBUILDER_ASSETS:-}}
declare -a dirs=()
if [ -n "$given" ] && [ -x "$given/etcd" ] && [ -x "$given/kube-apiserver" ]; then
  log "using etcd and kube-apiserver from $given"
  dirs+=("$given")
  steps=()
  [ -x "$given/kubectl" ] || steps+=(kubectl k8s.io/kubernetes/cmd/kubectl "$kl" --)
  [ -x "$given/kube-proxy" ] || steps+=(kube-proxy k8s.io/kubernetes/cmd/kube-proxy "$kl" --)
  if [ ${#steps[@]} -gt 0 ]; then
    dirs+=("$(build_module "$here/kube" "kube-tools-$K8S_VERSION" -- "${steps[@]}")")
  fi
else
  dirs+=("$(build_module "$here/kube" "kube-$K8S_VERSION-etcd-$ETCD_VERSION" -- \
    kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kl" -- \
    kubectl k8s.io/kubernetes/cmd/kubectl "$kl" -- \
    kube-proxy k8s.io/kubernetes/cmd/kube-proxy "$kl" -- \
    etcd go.etcd.io/etcd/server/v3 "")")
fi
dirs+=("$(build_module "$here/helm" "helm-$HELM_VERSION" -- \
  helm helm.sh/helm/v3/cmd/helm "$(helm_ldflags)")")
if [ -n "$given" ] && [ -x "$given/promtool" ]; then
  log "using promtool from $given"
else
  require_pin "$here/promtool" github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION"
  # remove_all_sd (Prometheus's own build tag) leaves out the cloud service-discovery plugins,
  # which rule tests never use: the cold build takes about 2 minutes instead of nearly 6.
  dirs+=("$(GO_TAGS=remove_all_sd build_module "$here/promtool" "promtool-$PROMETHEUS_VERSION" -- \
    promtool github.com/prometheus/prometheus/cmd/promtool "$(promtool_ldflags)")")
fi

# Point $cache/bin at this checkout's binaries (symlinks, replaced atomically per file).
mkdir -p "$cache/bin"
for d in "${dirs[@]}"; do
  for f in "$d"/bin/* "$d"/*; do
    [ -f "$f" ] && [ -x "$f" ] || continue
    ln -sfn "$f" "$cache/bin/.$(basename "$f").new" && mv -T "$cache/bin/.$(basename "$f").new" "$cache/bin/$(basename "$f")"
  done
done
printf '%s\n' "$cache/bin"
