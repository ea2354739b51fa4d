# shellcheck shell=bash
# _bootstrap.sh -- sourced by deploy/local/demo and deploy/local/run-tests.
#
# Makes sure this machine can run amqptasks from this checkout, then puts the
# project's virtualenv first on PATH:
#
#   1. python3 with venv and pip (on Debian: apt-get install python3-venv python3-pip,
#      only when they are missing);
#   2. a virtualenv at $REPO/.venv (created once, reused afterwards);
#   3. `pip install -e "${REPO}[test]"`, skipped when pyproject.toml has not changed
#      since the last successful install into that venv.
#
# RabbitMQ itself is installed by deploy/local/rabbitmq-node when it first starts a node.
#
# After sourcing: REPO (repository root), VENV, PATH with $VENV/bin first, VIRTUAL_ENV.
# Environment: AMQPTASKS_VENV overrides the venv location.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${AMQPTASKS_VENV:-$REPO/.venv}

_bootstrap_log() { printf '%s\n' "bootstrap: $*" >&2; }
_bootstrap_die() {
    _bootstrap_log "error: $*"
    return 1
}

# True when `python3` can create a virtualenv with pip in it.  On Debian the venv
# module's --help works without python3-venv, but creating a venv then fails for lack
# of ensurepip, so both are checked.
_bootstrap_python_ok() {
    command -v python3 >/dev/null 2>&1 &&
        python3 -m venv --help >/dev/null 2>&1 &&
        python3 -c 'import ensurepip' >/dev/null 2>&1
}

_bootstrap_python() {
    _bootstrap_python_ok && return 0
    command -v apt-get >/dev/null 2>&1 ||
        _bootstrap_die "python3 with the venv module is required (and apt-get is not available to install it)" ||
        return 1
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    _bootstrap_log "installing python3-venv and python3-pip with apt-get"
    "${sudo[@]}" apt-get update -qq >&2 || return 1
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq python3-venv python3-pip >&2 ||
        return 1
    _bootstrap_python_ok || _bootstrap_die "python3 still cannot create a venv after installing python3-venv"
}

_bootstrap_venv() {
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        return 0
    fi
    if [ -e "$VENV" ]; then
        _bootstrap_log "$VENV is not a working virtualenv; recreating it"
        rm -rf "$VENV"
    fi
    _bootstrap_log "creating virtualenv $VENV"
    python3 -m venv "$VENV" >&2 || _bootstrap_die "python3 -m venv $VENV failed"
}

_bootstrap_install() {
    local stamp="$VENV/.amqptasks-install-stamp" want have=""
    want="$REPO $(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
    [ -f "$stamp" ] && have=$(cat "$stamp")
    if [ "$have" = "$want" ] && "$VENV/bin/python" -c 'import amqptasks' >/dev/null 2>&1; then
        return 0
    fi
    _bootstrap_log "installing amqptasks (editable, with test extras) into $VENV"
    rm -f "$stamp"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "${REPO}[test]" >&2 ||
        _bootstrap_die "pip install -e ${REPO}[test] failed" || return 1
    printf '%s\n' "$want" >"$stamp"
}

# Sourced: `return` hands the failure to the caller (`. _bootstrap.sh || exit 1`).
_bootstrap_python && _bootstrap_venv && _bootstrap_install || return 1

export VIRTUAL_ENV=$VENV
export PATH="$VENV/bin:$PATH"
unset PYTHONHOME
