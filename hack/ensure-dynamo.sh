#!/usr/bin/env bash
# Builds the two development virtualenvs the local DGD runner (devtools/dgdrunner) uses, apart
# from the controller's .venv, its wheel and its image:
#   .venv-dynamo  ai-dynamo 1.6.1 (python -m dynamo.frontend / python -m dynamo.mocker)
#   .venv-aiperf  aiperf 0.13.0 (the benchmark client)
# The ai-dynamo wheel requires `aisimulate`, a stub no reachable registry serves, so ai-dynamo
# goes in with --no-deps and its runtime dependencies are listed here. Idempotent: a stamp per venv records the recipe it was built with,
# so a second run only checks (well under a second). Prints what it does and how long it took.
# Usage: bash hack/ensure-dynamo.sh [dynamo|aiperf|all]   (default all)
# DGDR_DYNAMO_VENV / DGDR_AIPERF_VENV move the venvs (CI caches can point them elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
DYNAMO_VENV=${DGDR_DYNAMO_VENV:-.venv-dynamo}
AIPERF_VENV=${DGDR_AIPERF_VENV:-.venv-aiperf}
DYNAMO_PKGS=(
  "aiohttp>=3.14.3" msgspec "prometheus-client>=0.23.1" pyzmq "redis<9" tqdm typing-extensions
  "zstandard<1.0" "kubernetes>=32.0.1,<33" certifi packaging transformers tokenizers
)
DYNAMO_RECIPE="ai-dynamo-runtime==1.6.1 ai-dynamo==1.6.1(no-deps) ${DYNAMO_PKGS[*]}"
AIPERF_RECIPE="aiperf==0.13.0"

stamp_of() { printf '%s' "$1" | sha256sum | cut -c1-16; }

build() {  # build <venv> <recipe> <installer function>
  local venv=$1 recipe=$2 install=$3
  local stamp="$venv/.dgdr-recipe-$(stamp_of "$recipe")"
  if [[ -f $stamp ]]; then
    echo "ensure-dynamo: $venv ready ($recipe)"
    return 0
  fi
  local t0=$SECONDS
  echo "ensure-dynamo: building $venv: $recipe"
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$install" "$venv"
  touch "$stamp"
  echo "ensure-dynamo: $venv built in $((SECONDS - t0)) s, $(du -sh "$venv" | cut -f1)"
}

install_dynamo() {
  local venv=$1
  "$venv/bin/pip" install --quiet --disable-pip-version-check ai-dynamo-runtime==1.6.1
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps ai-dynamo==1.6.1
  # pip's resolver then reports ai-dynamo's missing `aisimulate`: expected, filtered out here.
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${DYNAMO_PKGS[@]}" 2>&1 |
    grep -vE "dependency resolver does not currently|dependency conflicts\.|requires aisimulate" || true
  "$venv/bin/python" -c 'import dynamo.frontend, dynamo.mocker, tokenizers' >/dev/null
}

install_aiperf() {
  local venv=$1
  "$venv/bin/pip" install --quiet --disable-pip-version-check aiperf==0.13.0
  "$venv/bin/aiperf" --help >/dev/null
}

what=${1:-all}
case $what in
  dynamo) build "$DYNAMO_VENV" "$DYNAMO_RECIPE" install_dynamo ;;
  aiperf) build "$AIPERF_VENV" "$AIPERF_RECIPE" install_aiperf ;;
  all)
    build "$DYNAMO_VENV" "$DYNAMO_RECIPE" install_dynamo
    build "$AIPERF_VENV" "$AIPERF_RECIPE" install_aiperf
    ;;
  *) echo "usage: $0 [dynamo|aiperf|all]" >&2; exit 2 ;;
esac
