"""Local stand-in for the Cortex XSOAR `demisto` object.

Inside XSOAR the platform provides `demisto`; the unifier strips the integration's import of this
module. Outside XSOAR this module lets the integration run from a shell and in tests.

Shell use (the integration script is the main program):

    python MicrosoftGraphMail.py COMMAND [name=value ...] --params FILE
                                 [--state FILE] [--out DIR] [--json]

- ``--params``: JSON object of instance parameters keyed by the yml names; credentials-type
  parameters are ``{"identifier": ..., "password": ...}``. A value written as ``"$ENV:NAME"`` is
  read from the environment variable NAME, so secrets need not sit in the file.
- ``--state`` (default ``./.mgm-state.json``): integration context, last run and the files written
  by earlier commands. Written atomically (temp file + rename).
- ``--out`` (default ``./out``): where file results (attachments, EML) are written, under
  sanitised names that cannot leave the folder.
- Output: entries rendered for a terminal (errors to stderr, exit code 1), or with ``--json`` one
  JSON document ``{"entries", "incidents", "last_run"}`` on stdout.

``getFilePath(entry_id)`` accepts a path to an existing file or the id of a file that an earlier
command wrote to ``--out``; this is how a saved attachment is sent by the next command.

When imported under pytest nothing of the above happens: every call has an in-memory default that
tests patch with ``mocker.patch.object(demisto, 'args', return_value=...)``.
"""
import atexit
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import uuid
from typing import Any, Optional

_log = logging.getLogger('demistomock')

DEFAULT_STATE_FILE = '.mgm-state.json'
DEFAULT_OUT_DIR = 'out'
ERROR_ENTRY_TYPE = 4
FILE_ENTRY_TYPES = (3, 9)


class _Runtime:
    """Everything one run of the integration reads and writes."""

    def __init__(self) -> None:
        self.command = ''
        self.args: dict = {}
        self.params: dict = {}
        self.state_path: Optional[str] = None
        self.out_dir: Optional[str] = None
        self.invocation_dir = os.getcwd()
        self.json_output = False
        self.state: dict = {'integration_context': {}, 'context_version': 0, 'last_run': {}, 'files': {}}
        self.entries: list = []
        self.incidents: Optional[list] = None
        self.pending_last_run: Optional[dict] = None
        self.pass_on: list = []  # the options a polling re-run gets (absolute paths)
        self.main_file = ''


_runtime = _Runtime()
callingContext: dict = {}


# ---------------------------------------------------------------- the demisto API
def params() -> dict:
    return _runtime.params


def args() -> dict:
    return _runtime.args


def command() -> str:
    return _runtime.command


def results(entry: Any) -> None:
    for item in entry if isinstance(entry, list) else [entry]:
        if isinstance(item, dict) and item.get('Type') in FILE_ENTRY_TYPES and item.get('FileID'):
            item = dict(item, File=_publish_file(item['FileID'], item.get('File') or 'file'))
        _runtime.entries.append(item)


def incidents(incident_list: list) -> None:
    published = []
    for incident in incident_list:
        attachments = [dict(att, name=att.get('name'), localPath=_publish_file(att['path'], att.get('name') or 'file'))
                       for att in incident.get('attachment') or []]
        published.append(dict(incident, attachment=attachments) if attachments else incident)
    _runtime.incidents = published


def getLastRun() -> dict:
    return _runtime.state.get('last_run') or {}


def setLastRun(obj: dict) -> None:
    # XSOAR applies the last run only when the fetch completes, so it is kept until exit.
    _runtime.pending_last_run = obj


def getIntegrationContext() -> dict:
    return _runtime.state.get('integration_context') or {}


def setIntegrationContext(context: dict) -> None:
    json.dumps(context)  # the platform stores JSON: refuse what it could not store before changing anything
    _runtime.state['integration_context'] = context
    _runtime.state['context_version'] = _runtime.state.get('context_version', 0) + 1
    _save_state()


def getIntegrationContextVersioned(refresh: bool = False) -> dict:
    if refresh:
        _reload_context()
    return {'context': getIntegrationContext(), 'version': _runtime.state.get('context_version', 0)}


def setIntegrationContextVersioned(context: dict, version: int = -1, sync: bool = False) -> None:
    if version != -1:
        _reload_context()
        if version < _runtime.state.get('context_version', 0):
            raise ValueError('Integration context version mismatch: it was updated by another run.')
    setIntegrationContext(context)


def getFilePath(entry_id: str) -> dict:
    known = _runtime.state.get('files', {}).get(entry_id)
    if known and os.path.isfile(known['path']):
        return {'id': entry_id, 'path': known['path'], 'name': known['name']}
    path = os.path.join(_runtime.invocation_dir, entry_id) if entry_id else ''
    if path and os.path.isfile(path):
        return {'id': entry_id, 'path': os.path.abspath(path), 'name': os.path.basename(path)}
    raise ValueError(f'Entry {entry_id} is not a file: give a path to a file or the id of a file saved by a command.')


def investigation() -> dict:
    return {'id': '1'}


def integrationInstance() -> str:
    return 'MicrosoftGraphMail_local'


def uniqueFile() -> str:
    return str(uuid.uuid4())


def demistoVersion() -> dict:
    return {'version': '8.0.0', 'buildNumber': 'local'}


def info(*parts: Any) -> None:
    _log.info(' '.join(str(p) for p in parts))


def debug(*parts: Any) -> None:
    _log.debug(' '.join(str(p) for p in parts))


def error(*parts: Any) -> None:
    _log.error(' '.join(str(p) for p in parts))


# ---------------------------------------------------------------- files
SAFE_NAME_CHARS = re.compile(r'[^\w.\- ()@+,=\[\]]', re.UNICODE)


def sanitize_file_name(name: str) -> str:
    """A file name that stays inside its folder: no separators, no leading dots, not empty."""
    base = name.replace('\\', '/').split('/')[-1]
    base = SAFE_NAME_CHARS.sub('_', base).strip().lstrip('.')
    return base[:200] or 'file'


def _publish_file(file_id: str, display_name: str) -> str:
    """Moves a file the integration wrote as `{investigation}_{FileID}` to a readable name."""
    written = os.path.abspath(f"{investigation()['id']}_{file_id}")
    if not os.path.isfile(written):
        return display_name
    target_dir = _runtime.out_dir or os.getcwd()
    stem, ext = os.path.splitext(sanitize_file_name(display_name))
    target = os.path.join(target_dir, stem + ext)
    counter = 1
    while os.path.exists(target):
        target = os.path.join(target_dir, f'{stem} ({counter}){ext}')
        counter += 1
    os.replace(written, target)
    _runtime.state.setdefault('files', {})[file_id] = {'path': target, 'name': display_name}
    _save_state()
    return target


# ---------------------------------------------------------------- state
def _read_state_file() -> dict:
    if not _runtime.state_path or not os.path.exists(_runtime.state_path):
        return {}
    with open(_runtime.state_path, encoding='utf-8') as handle:
        return json.load(handle)


def _reload_context() -> None:
    stored = _read_state_file()
    if stored:
        _runtime.state['integration_context'] = stored.get('integration_context', {})
        _runtime.state['context_version'] = stored.get('context_version', 0)


def _save_state() -> None:
    if not _runtime.state_path:
        return
    folder = os.path.dirname(_runtime.state_path) or '.'
    descriptor, temp_path = tempfile.mkstemp(dir=folder, prefix='.state-', suffix='.tmp')
    try:
        with os.fdopen(descriptor, 'w', encoding='utf-8') as handle:
            json.dump(_runtime.state, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_path, _runtime.state_path)
    except BaseException:
        os.remove(temp_path)
        raise


# ---------------------------------------------------------------- command line
USAGE = ('usage: python MicrosoftGraphMail.py COMMAND [name=value ...] --params FILE '
         '[--state FILE] [--out DIR] [--json]')


def _resolve_env_references(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _resolve_env_references(item) for key, item in value.items()}
    if isinstance(value, str) and value.startswith('$ENV:'):
        return os.environ.get(value[len('$ENV:'):], '')
    return value


def _read_json_file(path: str, option: str) -> dict:
    try:
        with open(path, encoding='utf-8') as handle:
            document = json.load(handle)
    except OSError as exc:
        raise SystemExit(f'{option} {path}: cannot read the file ({exc.strerror})') from None
    except ValueError as exc:
        raise SystemExit(f'{option} {path}: not valid JSON ({exc})') from None
    if not isinstance(document, dict):
        raise SystemExit(f'{option} {path}: expected a JSON object of instance parameters')
    return document


def _parse_command_line(argv: list) -> None:
    options = {'--params': None, '--state': DEFAULT_STATE_FILE, '--out': DEFAULT_OUT_DIR}
    positional = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in options:
            if index + 1 >= len(argv):
                raise SystemExit(f'{word} needs a value\n{USAGE}')
            options[word] = argv[index + 1]
            index += 2
            continue
        if word == '--json':
            _runtime.json_output = True
        elif word in ('-h', '--help'):
            raise SystemExit(USAGE)
        else:
            positional.append(word)
        index += 1
    if not positional:
        raise SystemExit(USAGE)
    _runtime.command = positional[0]
    for pair in positional[1:]:
        name, separator, value = pair.partition('=')
        if not separator:
            raise SystemExit(f'argument "{pair}" is not name=value\n{USAGE}')
        _runtime.args[name] = value
    _runtime.main_file = os.path.abspath(getattr(sys.modules.get('__main__'), '__file__', '') or sys.argv[0])
    _runtime.pass_on = [*(['--params', os.path.abspath(options['--params'])] if options['--params'] else []),
                        '--state', os.path.abspath(options['--state']), '--out', os.path.abspath(options['--out']),
                        *(['--json'] if _runtime.json_output else [])]
    if options['--params']:
        _runtime.params = _resolve_env_references(_read_json_file(options['--params'], '--params'))
    _runtime.state_path = os.path.abspath(options['--state'])
    _runtime.out_dir = os.path.abspath(options['--out'])
    os.makedirs(_runtime.out_dir, exist_ok=True)
    try:
        _runtime.state.update(_read_state_file())
    except (OSError, ValueError) as exc:
        raise SystemExit(f'--state {options["--state"]}: not a readable state file ({exc})') from None
    # The integration writes file results into the working directory, as it does inside XSOAR.
    os.chdir(_runtime.out_dir)


def _entry_text(entry: Any) -> str:
    if not isinstance(entry, dict):
        return str(entry)
    if entry.get('Type') in FILE_ENTRY_TYPES:
        return f"File saved: {entry.get('File')}"
    if entry.get('HumanReadable'):
        return entry['HumanReadable']
    contents = entry.get('Contents')
    return contents if isinstance(contents, str) else json.dumps(contents, indent=2, default=str)


def _print_incidents() -> None:
    print(f'{len(_runtime.incidents or [])} incident(s)')
    for incident in _runtime.incidents or []:
        names = ', '.join(att.get('name', '') for att in incident.get('attachment') or [])
        print(f"- {incident.get('occurred', '')}  {incident.get('name', '')}" + (f'  [{names}]' if names else ''))


def _follow_polling() -> None:
    """XSOAR runs a command again while its last entry carries polling keys (PollingCommand, PollingArgs: what
    CommonServerPython's ScheduledCommand adds). From a shell, show that entry on stderr as progress and run the
    command again at once with those arguments (a fresh process, same params, state and output folder); its exit
    status becomes ours."""
    last = _runtime.entries[-1] if _runtime.entries else None
    if not (isinstance(last, dict) and last.get('PollingCommand')) or any(
            isinstance(e, dict) and e.get('Type') == ERROR_ENTRY_TYPE for e in _runtime.entries):
        return
    print('\n'.join(_entry_text(last).strip().splitlines()[:3]), file=sys.stderr, flush=True)
    arguments = [f'{k}={v}' for k, v in (last.get('PollingArgs') or {}).items() if v is not None]
    command_line = [sys.executable, _runtime.main_file, str(last['PollingCommand']),
                    *arguments, *_runtime.pass_on]
    sys.stdout.flush()
    os._exit(subprocess.run(command_line, cwd=_runtime.invocation_dir).returncode)


def _finish() -> None:
    """Commits the last run (only on a completed run) and prints what the command produced."""
    _follow_polling()
    failed = any(isinstance(e, dict) and e.get('Type') == ERROR_ENTRY_TYPE for e in _runtime.entries)
    if _runtime.pending_last_run is not None and not failed:
        _runtime.state['last_run'] = _runtime.pending_last_run
        _save_state()
    if _runtime.json_output:
        document = {'entries': _runtime.entries, 'incidents': _runtime.incidents,
                    'last_run': _runtime.state.get('last_run')}
        print(json.dumps(document, default=str))
    else:
        for entry in _runtime.entries:
            is_error = isinstance(entry, dict) and entry.get('Type') == ERROR_ENTRY_TYPE
            print(_entry_text(entry), file=sys.stderr if is_error else sys.stdout)
        if _runtime.incidents is not None:
            _print_incidents()
    sys.stdout.flush()
    sys.stderr.flush()
    if failed:
        os._exit(1)


def _started_from_shell() -> bool:
    main_file = getattr(sys.modules.get('__main__'), '__file__', '') or ''
    return ('pytest' not in sys.modules and main_file.endswith('.py')
            and os.path.basename(main_file) != os.path.basename(__file__))


def _report_uncaught(kind: type, value: BaseException, trace: Any) -> None:
    """A failed fetch raises (so the platform keeps the last run); print it as a message, not a traceback."""
    if os.environ.get('MGM_LOG_LEVEL', '').upper() == 'DEBUG':
        sys.__excepthook__(kind, value, trace)
    else:
        print(f'Error: {value}', file=sys.stderr)


if _started_from_shell():
    sys.excepthook = _report_uncaught
    logging.basicConfig(level=os.environ.get('MGM_LOG_LEVEL', 'WARNING'), stream=sys.stderr,
                        format='%(levelname)s %(name)s: %(message)s')
    _parse_command_line(sys.argv[1:])
    atexit.register(_finish)
