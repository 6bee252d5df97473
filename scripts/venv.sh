# Sourced by the emulator scripts: a Python venv outside the clone, created once.
#   ensure_venv <venv dir> <binary it must have> <pip requirement>
ensure_venv() {
  local venv="$1" binary="$2" requirement="$3"
  mkdir -p "$(dirname "$venv")"
  # One creator at a time: parallel test binaries may all ask for the venv at once.
  exec 9>"$venv.lock"
  flock 9
  if [ ! -x "$venv/bin/$binary" ]; then
    echo "creating $venv with $requirement" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$requirement" >&2
  fi
  flock -u 9
}
