#!/usr/bin/env bash
# SoftHSM2 tokens for tests: each run gets its own token directory and SOFTHSM2_CONF (a process
# reads the configuration once, at C_Initialize, so the tokens and keys it needs come first).
#   scripts/softhsm.sh module                          the module's path
#   scripts/softhsm.sh token <dir> <label> <pin>       a token in <dir> (conf: <dir>/softhsm2.conf)
#   scripts/softhsm.sh key <dir> <token> <pin> <label> [--extractable]   an AES-256 key on it
#                                                      (private, sensitive, non-extractable unless asked)
set -euo pipefail
MODULE="${SHAREVAULT_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"

need() {
  [ -f "$MODULE" ] || { echo "no PKCS#11 module at $MODULE (apt-get install softhsm2)" >&2; exit 1; }
  command -v softhsm2-util >/dev/null || { echo "no softhsm2-util (apt-get install softhsm2)" >&2; exit 1; }
}

case "${1:-}" in
  module) need; echo "$MODULE" ;;
  token)
    need
    dir="${2:?dir}" label="${3:?label}" pin="${4:?pin}"
    mkdir -p "$dir/tokens"
    [ -f "$dir/softhsm2.conf" ] || printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir" >"$dir/softhsm2.conf"
    SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "so-$pin" >/dev/null
    echo "$dir/softhsm2.conf"
    ;;
  key)
    need
    command -v pkcs11-tool >/dev/null || { echo "no pkcs11-tool (apt-get install opensc)" >&2; exit 1; }
    dir="${2:?dir}" token="${3:?token}" pin="${4:?pin}" label="${5:?label}"
    extra=()
    [ "${6:-}" = "--extractable" ] && extra+=(--extractable)
    # pkcs11-tool warns that it cannot read the new key's value (it is sensitive): said only on failure.
    if ! out=$(SOFTHSM2_CONF="$dir/softhsm2.conf" pkcs11-tool --module "$MODULE" --token-label "$token" --login --pin "$pin" \
      --keygen --key-type AES:32 --label "$label" --sensitive --private "${extra[@]}" 2>&1); then
      echo "$out" >&2
      exit 1
    fi
    ;;
  *) echo "usage: $0 module | token <dir> <label> <pin> | key <dir> <token> <pin> <label> [--extractable]" >&2; exit 2 ;;
esac
