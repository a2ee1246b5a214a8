#!/usr/bin/env bash
# Creates .venv-tools (once) and installs requirements-tools.txt (demisto-sdk, pinned) into it.
# Kept apart from .venv: the SDK brings ~140 packages (pylint, neo4j, docker, google-cloud, ...).
# Sourced by scripts/validate.sh; run by scripts/build.py when the SDK is not installed yet.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_VENV="$ROOT/.venv-tools"
PYTHON_BIN="${PYTHON:-python3}"
if [ ! -x "$TOOLS_VENV/bin/python" ]; then
  "$PYTHON_BIN" -m venv "$TOOLS_VENV"
fi
# Keep the venv out of git status without touching the project's .gitignore.
[ -f "$TOOLS_VENV/.gitignore" ] || echo '*' > "$TOOLS_VENV/.gitignore"
stamp="$TOOLS_VENV/.requirements-$(sha256sum "$ROOT/requirements-tools.txt" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Installing demisto-sdk into .venv-tools (first run only; about 340 MB)..." >&2
  "$TOOLS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements-tools.txt"
  touch "$stamp"
fi
TOOLS_PY="$TOOLS_VENV/bin/python"
SDK="$TOOLS_VENV/bin/demisto-sdk"
