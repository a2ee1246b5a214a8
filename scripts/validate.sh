#!/usr/bin/env bash
# Validates the integration with demisto-sdk, offline:
#   1. `demisto-sdk validate` on a temporary pack (Packs/MicrosoftGraphMail, made by scripts/build.py) with
#      the SDK's own list of validations minus the ones that need the internet, Docker or the content
#      graph (policy and reasons: tools/validation.toml);
#   2. the XSOAR pylint checkers (what `demisto-sdk xsoar-lint` runs) on MicrosoftGraphMail.py.
# Installs demisto-sdk into .venv-tools on first use (about 340 MB, ~1 minute). Exit status 1 when either fails.
# Usage: bash scripts/validate.sh [--keep]   (--keep leaves the temporary pack repo for inspection)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/bootstrap.sh"        # .venv (PY): the project's Python, to stage the pack
source "$ROOT/tools/bootstrap-tools.sh"   # .venv-tools (TOOLS_PY, SDK): demisto-sdk
cd "$ROOT"

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/mgm-validate-XXXXXX")"
if [ "${1:-}" = "--keep" ]; then
  echo "temporary pack repo: $STAGE"
else
  trap 'rm -rf "$STAGE"' EXIT
fi
export DEMISTO_SDK_IGNORE_CONTENT_WARNING=1 DEMISTO_SDK_LOG_FILE_PATH="$STAGE/.sdk-logs"

"$PY" scripts/build.py --stage-for-validation "$STAGE/repo" >/dev/null
"$TOOLS_PY" tools/sdk_tools.py config "$STAGE/repo"

status=0
echo "== demisto-sdk $("$TOOLS_PY" -c 'import importlib.metadata as m; print(m.version("demisto-sdk"))') validate"
validate_rc=0
(cd "$STAGE/repo" && "$SDK" validate -i Packs/MicrosoftGraphMail --config-path validation_config.toml \
    >"$STAGE/validate.log" 2>&1) || validate_rc=$?
grep -v -e '^Could not get repository properties' -e '^[[:space:]]*$' "$STAGE/validate.log" || true
if [ "$validate_rc" != 0 ]; then
  echo "validate: FAILED (exit $validate_rc)" >&2
  status=1
fi

echo "== XSOAR pylint checkers"
if ! "$TOOLS_PY" tools/sdk_tools.py lint "$STAGE/repo"; then
  echo "xsoar lint: FAILED" >&2
  status=1
fi

[ "$status" = 0 ] && echo "validation passed"
exit "$status"
