# Shared set-up steps for hack/test.sh and hack/demo.sh: each is idempotent and cheap when done.
# shellcheck shell=bash

# run_step <what> <about how long> <command...>: says what starts and about how long it takes,
# prints the time spent every PROGRESS_EVERY seconds (default 20) while it runs, and how long it
# took (or that it failed) at the end; returns the command's status. All of it on stderr.
run_step() {
  local what=$1 eta=$2
  shift 2
  local start every=${PROGRESS_EVERY:-20} rc=0 pid ticker
  start=$(date +%s)
  echo "==> $what (about $eta)" >&2
  "$@" &
  pid=$!
  (
    while sleep "$every"; do
      echo "    ... $what: $(( $(date +%s) - start ))s so far" >&2
    done
  ) &
  ticker=$!
  wait "$pid" || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  if [[ $rc -eq 0 ]]; then
    echo "    $what: done in $(( $(date +%s) - start ))s" >&2
  else
    echo "    $what: FAILED (exit $rc) after $(( $(date +%s) - start ))s" >&2
  fi
  return "$rc"
}

ensure_venv() {
  if [[ ! -x .venv/bin/python ]]; then
    run_step "creating the virtualenv .venv" "5 s" python3 -m venv .venv
  fi
  local stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
  if [[ ! -f $stamp ]]; then
    echo "Installing the pinned Python packages of pyproject.toml into .venv (once, and again" \
         "whenever pyproject.toml changes)." >&2
    run_step "upgrading pip" "10 s" .venv/bin/pip install --quiet --upgrade pip
    run_step "installing the project and its test, bench and dev packages" \
      "1-2 minutes, mostly downloads" .venv/bin/pip install --quiet -e '.[test,bench,dev]'
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
