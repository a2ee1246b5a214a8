"""Re-runs a program with the project's .venv when the current Python lacks the packages it needs, so
`python3 scripts/<name>.py`, `python3 MicrosoftGraphMail.py ...` and `python3 -m sandbox` work from any Python
on the machine. Creates .venv with scripts/bootstrap.sh when it does not exist yet."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
REEXEC_FLAG = 'MGM_PROJECT_PYTHON_REEXEC'


def ensure_project_python(script: str, modules: tuple, command: Optional[Sequence[str]] = None) -> None:
    """Returns when every module in `modules` can be imported; otherwise replaces this process with the same
    program under .venv/bin/python. `command` is what follows the interpreter (default: the script's path),
    for example ['-m', 'sandbox']."""
    if all(importlib.util.find_spec(name) for name in modules):
        os.environ.pop(REEXEC_FLAG, None)  # children started from here choose their own Python again
        return
    if os.environ.get(REEXEC_FLAG):
        raise SystemExit(f'{Path(script).name}: the project venv lacks {", ".join(modules)}; run scripts/bootstrap.sh')
    venv_python = ROOT / '.venv' / 'bin' / 'python'
    if not venv_python.is_file():
        print('Creating the project venv (.venv) with scripts/bootstrap.sh ...', file=sys.stderr, flush=True)
        subprocess.run(['bash', str(ROOT / 'scripts' / 'bootstrap.sh')], check=True)
    os.environ[REEXEC_FLAG] = '1'
    program = list(command) if command else [str(Path(script).resolve())]
    os.execv(str(venv_python), [str(venv_python), *program, *sys.argv[1:]])
