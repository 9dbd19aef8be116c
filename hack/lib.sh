# Shared set-up steps for hack/test.sh and hack/demo.sh: each is idempotent and cheap when done.
# shellcheck shell=bash

ensure_venv() {
  if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
  fi
  local stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
  if [[ ! -f $stamp ]]; then
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e '.[test,bench,dev]'
    touch "$stamp"
  fi
}

ensure_apt() {  # ensure_apt <command> <debian package>
  command -v "$1" >/dev/null && return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "$1 is missing: install the Debian package '$2' (sudo apt-get install -y $2)" >&2
    return 1
  fi
  # Never start packaged services: policy-rc.d is honoured by the package's maintainer scripts.
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
  if command -v systemctl >/dev/null; then systemctl disable --now "$2" >/dev/null 2>&1 || true; fi
  pkill -x "$1" >/dev/null 2>&1 || true
}

ensure_binaries() {
  if [[ -n ${KUBEBUILDER_ASSETS:-} ]]; then
    echo "using control-plane binaries from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  else
    bash hack/build-testbed.sh
  fi
}
