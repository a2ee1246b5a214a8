#!/usr/bin/env bash
# The demo: starts the local Graph sandbox, configures an instance for it, and runs the integration's commands.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
exec "$PY" scripts/demo.py "$@"
