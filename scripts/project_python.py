"""Re-runs a script with the project's .venv when the current Python lacks the packages the script needs,
so `python scripts/<name>.py` works from any Python on the machine."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REEXEC_FLAG = 'MGM_PROJECT_PYTHON_REEXEC'


def ensure_project_python(script: str, modules: tuple) -> None:
    if all(importlib.util.find_spec(name) for name in modules):
        return
    if os.environ.get(REEXEC_FLAG):
        raise SystemExit(f'{Path(script).name}: the project venv lacks {", ".join(modules)}; run scripts/bootstrap.sh')
    venv_python = ROOT / '.venv' / 'bin' / 'python'
    if not venv_python.is_file():
        subprocess.run(['bash', str(ROOT / 'scripts' / 'bootstrap.sh')], check=True)
    os.environ[REEXEC_FLAG] = '1'
    os.execv(str(venv_python), [str(venv_python), str(Path(script).resolve()), *sys.argv[1:]])
