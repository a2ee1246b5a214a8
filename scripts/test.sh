#!/usr/bin/env bash
# The whole test suite: unit tests, the sandbox's own tests and the end-to-end tests against the sandbox.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
exec "$PY" -m pytest "$@"
