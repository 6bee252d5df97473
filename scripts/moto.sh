#!/usr/bin/env bash
# The AWS KMS emulator for tests and benchmarks: moto's server, on a loopback port.
#   scripts/moto.sh venv                 create the Python venv with moto[server] if missing
#   scripts/moto.sh start [port]         start moto_server in the background; prints "<pid> <endpoint>"
#   scripts/moto.sh stop <pid>           stop it
#   scripts/moto.sh create-key <endpoint> [alias]   create a symmetric key; prints its ARN
# The venv lives outside the clone (reused between runs): $SHAREVAULT_MOTO_VENV or ~/.cache.
set -euo pipefail
VENV="${SHAREVAULT_MOTO_VENV:-$HOME/.cache/sharevault-moto-venv}"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1

MOTO_VERSION=5.2.5

# shellcheck source=scripts/venv.sh
. "$(dirname "$0")/venv.sh"
venv() { ensure_venv "$VENV" moto_server "moto[server]==$MOTO_VERSION"; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

case "${1:-}" in
  venv) venv ;;
  start)
    venv
    port="${2:-$(free_port)}"
    log="${TMPDIR:-/tmp}/sharevault-moto-$port.log"
    nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    pid=$!
    # Watchdog: when the process that asked for the server (a jest worker, a cargo test) dies,
    # even by SIGKILL, the server goes too.
    owner="${SHAREVAULT_MOTO_OWNER:-$PPID}"
    nohup sh -c "while kill -0 $owner 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 1; done; kill -CONT $pid 2>/dev/null; kill $pid 2>/dev/null" >/dev/null 2>&1 &
    for _ in $(seq 1 100); do
      if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null; then
        echo "$pid http://127.0.0.1:$port"
        exit 0
      fi
      if ! kill -0 "$pid" 2>/dev/null; then echo "moto_server exited; see $log" >&2; exit 1; fi
      sleep 0.1
    done
    echo "moto_server did not answer on port $port; see $log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
    ;;
  stop)
    pid="${2:?pid}"
    case "$pid" in ''|*[!0-9]*) echo "not a pid: $pid" >&2; exit 2 ;; esac
    [ "$pid" -gt 1 ] || { echo "refusing to signal pid $pid" >&2; exit 2; }
    kill "$pid" 2>/dev/null || true
    ;;
  create-key)
    venv
    "$VENV/bin/python" - "${2:?endpoint}" "${3:-}" <<'PY'
import sys, boto3
endpoint, alias = sys.argv[1], sys.argv[2]
kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1")
arn = kms.create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["Arn"]
if alias:
    kms.create_alias(AliasName=alias, TargetKeyId=arn)
print(arn)
PY
    ;;
  *) echo "usage: $0 venv | start [port] | stop <pid> | create-key <endpoint> [alias]" >&2; exit 2 ;;
esac
