#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver and etcd) from the published Go modules into a
# version-keyed cache outside the checkout, so every run after the first starts in seconds.
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces the staging modules with local
# paths), so a throwaway main module requires it and replaces every staging module with its
# published v0.Y.Z tag, read from the real go.mod so a new staging module cannot break the build.
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CACHE_ROOT=${DGDR_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dgdr-testbed}
OUT="$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"

if [[ -x $OUT/kube-apiserver && -x $OUT/etcd ]]; then
  echo "cached: $OUT"
  exit 0
fi
source "$(dirname "$0")/lib.sh"   # run_step
jobs=$(nproc)
cat >&2 <<ANNOUNCE
Building the local control plane the tests and the demo run against: kube-apiserver $K8S_VERSION
and etcd $ETCD_VERSION, from their published Go modules, into
  $OUT
This happens once (later runs start it in seconds) and takes about 3 minutes on 2 cores
($jobs here), plus the module downloads on a cold Go cache. To skip it, set KUBEBUILDER_ASSETS to
a directory holding envtest's kube-apiserver and etcd.
ANNOUNCE
command -v go >/dev/null || {
  echo "Go is needed to build kube-apiserver and etcd (or set KUBEBUILDER_ASSETS to envtest binaries)" >&2
  exit 1
}
mkdir -p "$OUT.partial"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
start=$(date +%s)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- kube-apiserver -------------------------------------------------------------------------
mkdir "$work/k8s" && cd "$work/k8s"
go mod init example.invalid/k8s-testbed-build >/dev/null 2>&1
download=$(run_step "[1/4] fetching the k8s.io/kubernetes $K8S_VERSION module" \
  "30 s on a cold Go module cache" go mod download -json "k8s.io/kubernetes@$K8S_VERSION")
gomod=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])' <<<"$download")
staging=v0.${K8S_VERSION#v1.}
mods=$(sed -nE 's#^[[:space:]]*(replace[[:space:]]+)?(k8s\.io/[^[:space:]]+)[[:space:]]+=>[[:space:]]+\./staging/.*#\2#p' "$gomod")
[[ -n $mods ]] || { echo "no staging replaces found in $gomod" >&2; exit 1; }
if grep -E '=>' "$gomod" | grep -vq '\./staging/'; then
  echo "non-staging replace directives in $gomod; they would have to be copied:" >&2
  grep -E '=>' "$gomod" | grep -v '\./staging/' >&2
  exit 1
fi
for m in $mods; do go mod edit -replace="$m=$m@$staging"; done
run_step "[2/4] fetching the dependencies of kube-apiserver" \
  "1 minute on a cold Go module cache" go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION"
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ld="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done
run_step "[3/4] compiling kube-apiserver (the long step)" "2-3 minutes on 2 cores" \
  go build -p "$jobs" -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ld" \
  -o "$OUT.partial/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver

# --- etcd (a separate module, so MVS does not lift the apiserver's etcd client libraries) ----
mkdir "$work/etcd" && cd "$work/etcd"
go mod init example.invalid/etcd-testbed-build >/dev/null 2>&1
etcd_build() {
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" &&
    go build -p "$jobs" -trimpath -ldflags "-s -w" -o "$OUT.partial/etcd" go.etcd.io/etcd/server/v3
}
run_step "[4/4] fetching and compiling etcd $ETCD_VERSION" "30-60 s" etcd_build

"$OUT.partial/kube-apiserver" --version
"$OUT.partial/etcd" --version | head -1
printf '{"k8s_version": "%s", "etcd_version": "%s", "build_seconds": %d, "built_at": "%s"}\n' \
  "$K8S_VERSION" "$ETCD_VERSION" "$(( $(date +%s) - start ))" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  > "$OUT.partial/build-info.json"
rm -rf "$OUT"
mv "$OUT.partial" "$OUT"
echo "built in $(( $(date +%s) - start ))s: $OUT"
