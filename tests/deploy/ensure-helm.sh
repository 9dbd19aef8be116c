#!/usr/bin/env bash
# Builds the helm CLI from its published Go module into a version-keyed cache outside the
# checkout (no prebuilt binary download), and prints its path. Cheap when already built.
set -euo pipefail
HELM_VERSION=${HELM_VERSION:-v3.22.0}
CACHE_ROOT=${DGDR_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dgdr-testbed}
OUT="$CACHE_ROOT/helm-$HELM_VERSION"
if [[ ! -x $OUT/helm ]]; then
  command -v go >/dev/null || { echo "Go is needed to build helm $HELM_VERSION" >&2; exit 1; }
  mkdir -p "$OUT.partial"
  GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN="$OUT.partial" \
    go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  rm -rf "$OUT" && mv "$OUT.partial" "$OUT"
fi
echo "$OUT/helm"
