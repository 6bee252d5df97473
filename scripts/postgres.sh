#!/usr/bin/env bash
# The PostgreSQL server the storage tests use.
#   scripts/postgres.sh ensure   make sure a server answers on 127.0.0.1:5432: start the installed
#                                cluster if it is down, or install Debian's postgresql (with
#                                trust auth on loopback, for tests only) if there is none
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ready() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }

wait_ready() {
  for _ in $(seq 1 60); do ready && return 0; sleep 0.5; done
  echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
  return 1
}

case "${1:-}" in
  ensure)
    ready && { echo "PostgreSQL is up"; exit 0; }
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      echo "installing PostgreSQL" >&2
      as_root apt-get update -qq
      as_root apt-get install -y -qq postgresql >/dev/null
      version="$(ls /etc/postgresql | sort -V | tail -n 1)"
      hba="/etc/postgresql/$version/main/pg_hba.conf"
      # Tests connect as postgres over loopback without a password.
      as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
    fi
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_ready
    echo "PostgreSQL is up"
    ;;
  *)
    sed -n '2,6p' "$0"
    exit 2
    ;;
esac
