"""Local stand-in for the Cortex XSOAR `demisto` object.

Inside XSOAR the platform provides `demisto`; the unifier strips the integration's import of this
module. Outside XSOAR this module lets the integration run from a shell and in tests.

Shell use (the integration script is the main program; README "Running from a shell"):

    python3 MicrosoftGraphMail.py COMMAND [name=value ...] --params FILE
                                  [--state FILE] [--out DIR] [--json]
    python3 MicrosoftGraphMail.py --help | COMMAND --help

- Started with a Python that lacks the packages the runner needs, it re-runs the command with the project's
  ``.venv`` (scripts/project_python.py, which creates the venv on first use).
- Commands and their arguments come from the yml beside the module: an argument the command does not
  declare is refused (as XSOAR does), with the nearest declared name suggested; so is an unknown command.
- ``--params``: JSON object of instance parameters keyed by the yml names; credentials-type
  parameters are ``{"identifier": ..., "password": ...}``. A value written as ``"$ENV:NAME"`` is
  read from the environment variable NAME (unset is an error naming it). ``"_ca_bundle": PATH`` is for the
  runner only: it trusts that certificate authority (as REQUESTS_CA_BUNDLE would).
- ``--state`` (default ``./.mgm-state.json``): integration context, last run and the files written
  by earlier commands. One run at a time: the run holds a lock (``STATE.lock``) from start to end, so
  parallel runs wait for each other. Each save writes only what this run changed (the context when it
  set it, the files it wrote, the last run when a fetch completed) into the file as it is, atomically
  (temp file + rename, mode 0600). A state that cannot be read or saved is an error (exit 1).
- ``--out`` (default ``./out``): where file results (attachments, EML) are written, under
  sanitised names that cannot leave the folder.
- Output: entries rendered for a terminal (errors to stderr, exit code 1), or with ``--json`` one
  JSON document ``{"entries", "incidents", "last_run"}`` on stdout. Progress of long waits (retries,
  Retry-After, large transfers: ``demisto.info`` lines) goes to stderr; ``MGM_LOG_LEVEL=DEBUG`` adds the
  debug log.

``getFilePath(entry_id)`` accepts a path to an existing file or the id of a file that an earlier
command wrote to ``--out``; this is how a saved attachment is sent by the next command.

When imported under pytest nothing of the above happens: every call has an in-memory default that
tests patch with ``mocker.patch.object(demisto, 'args', return_value=...)``.
"""
import atexit
import difflib
import fcntl
import importlib.util
import json
import logging
import os
import re
import sys
import tempfile
import textwrap
import time
import uuid
from typing import Any, Optional

_log = logging.getLogger('demistomock')

DEFAULT_STATE_FILE = '.mgm-state.json'
DEFAULT_OUT_DIR = 'out'
ERROR_ENTRY_TYPE = 4
FILE_ENTRY_TYPES = (3, 9)
RUNNER_PACKAGES = ('requests', 'msal', 'yaml')
RUNNER_CA_BUNDLE_KEY = '_ca_bundle'
POLLING_STARTED_VARIABLE = 'DEMISTOMOCK_POLLING_STARTED'  # when a polling chain's first run started
PLATFORM_COMMANDS = {
    'test-module': 'Tests the instance: a token is issued and, with a fetch mailbox, the mailbox and the fetch '
                   "folder can be read. Prints 'ok' or what failed.",
    'fetch-incidents': 'Turns the mail that arrived in the fetch folder into incidents; the last run is kept in '
                       '--state, so the next fetch continues where this one ended.',
}


class _Runtime:
    """Everything one run of the integration reads and writes."""

    def __init__(self) -> None:
        self.command = ''
        self.args: dict = {}
        self.params: dict = {}
        self.state_path: Optional[str] = None
        self.state_label = ''
        self.out_dir: Optional[str] = None
        self.invocation_dir = os.getcwd()
        self.json_output = False
        self.state: dict = {'integration_context': {}, 'context_version': 0, 'last_run': {}, 'files': {}}
        self.context_changed = False
        self.new_files: dict = {}
        self.entries: list = []
        self.incidents: Optional[list] = None
        self.pending_last_run: Optional[dict] = None
        self.crashed = False
        self.lock_descriptor: Optional[int] = None
        self.pass_on: list = []  # the options a polling re-run gets (absolute paths)
        self.main_file = ''
        self.started_at = time.time()
        self.polling_timed_out = False


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
    _runtime.context_changed = True
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
    raise ValueError(f'No such file: {entry_id!r} is neither a file (relative to {_runtime.invocation_dir}) nor the id '
                     'of a file saved by an earlier command.')


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
    _runtime.new_files[file_id] = {'path': target, 'name': display_name}
    _save_state()
    return target


# ---------------------------------------------------------------- state
class StateFileError(ValueError):
    """The state file cannot be read or saved; the message names the file and says why."""


STATE_FIELDS = {'integration_context': dict, 'context_version': int, 'last_run': dict, 'files': dict}


def _state_where() -> str:
    return f'--state {_runtime.state_label or _runtime.state_path}'


def _json_kind(value: Any) -> str:
    if value is None:
        return 'null'
    kinds = {bool: 'a boolean', list: 'a list', str: 'a string', int: 'a number', float: 'a number', dict: 'an object'}
    return kinds.get(type(value), type(value).__name__)


def _checked_state(document: Any) -> dict:
    if not isinstance(document, dict):
        raise StateFileError(f'{_state_where()}: not a state file: it holds {_json_kind(document)}, not a JSON object. '
                             'Delete it (the next command starts with an empty state) or give another --state file.')
    for key, kind in STATE_FIELDS.items():
        value = document.get(key)
        if key in document and (not isinstance(value, kind) or isinstance(value, bool)):
            raise StateFileError(f'{_state_where()}: not a state file: "{key}" holds {_json_kind(value)}, expected '
                                 f'{"an object" if kind is dict else "a number"}. Delete the file or give another one.')
    return document


def _read_state_file() -> dict:
    if not _runtime.state_path or not os.path.exists(_runtime.state_path):
        return {}
    try:
        with open(_runtime.state_path, encoding='utf-8') as handle:
            document = json.load(handle)
    except OSError as exc:
        raise StateFileError(f'{_state_where()}: cannot read the file ({exc.strerror})') from None
    except ValueError as exc:
        raise StateFileError(f'{_state_where()}: not valid JSON ({exc})') from None
    return _checked_state(document)


def _reload_context() -> None:
    stored = _read_state_file()
    if stored:
        _runtime.state['integration_context'] = stored.get('integration_context', {})
        _runtime.state['context_version'] = stored.get('context_version', 0)


def _save_state(commit_last_run: bool = False) -> None:
    """Writes into the state file, as it is now, only what this run changed: the integration context when the
    run set it, the files it wrote, and the last run when a fetch completed (`commit_last_run`)."""
    if not _runtime.state_path:
        return
    merged = {'integration_context': {}, 'context_version': 0, 'last_run': {}, 'files': {}, **_read_state_file()}
    if _runtime.context_changed:
        merged['integration_context'] = _runtime.state.get('integration_context', {})
        merged['context_version'] = _runtime.state.get('context_version', 0)
    merged['files'] = {**merged['files'], **_runtime.new_files}
    if commit_last_run:
        merged['last_run'] = _runtime.state.get('last_run') or {}
    _write_state_file(merged)
    _runtime.state.update(merged)


def _write_state_file(document: dict) -> None:
    """Temporary file (mode 0600: the state holds the access token) + rename: never a half-written state."""
    assert _runtime.state_path
    folder = os.path.dirname(_runtime.state_path) or '.'
    try:
        descriptor, temp_path = tempfile.mkstemp(dir=folder, prefix='.state-', suffix='.tmp')
    except OSError as exc:
        raise StateFileError(f'{_state_where()}: cannot be saved ({exc.strerror})') from None
    try:
        with os.fdopen(descriptor, 'w', encoding='utf-8') as handle:
            json.dump(document, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_path, _runtime.state_path)
    except OSError as exc:
        _remove_quietly(temp_path)
        raise StateFileError(f'{_state_where()}: cannot be saved ({exc.strerror or exc})') from None
    except BaseException:
        _remove_quietly(temp_path)
        raise


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _lock_state() -> None:
    """Holds an exclusive lock on STATE.lock until the process ends: runs on one state file take turns, so each
    reads what the one before it wrote (two fetches never deliver the same mail)."""
    assert _runtime.state_path
    lock_path = _runtime.state_path + '.lock'
    try:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise SystemExit(f'{_state_where()}: cannot create the lock file {lock_path} ({exc.strerror})') from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f'Waiting for another command that uses {_runtime.state_label} to finish ...', file=sys.stderr,
                  flush=True)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
    except OSError as exc:
        raise SystemExit(f'{_state_where()}: cannot lock {lock_path} ({exc.strerror})') from None
    _runtime.lock_descriptor = descriptor


# ---------------------------------------------------------------- command line
OPTIONS_HELP = (
    ('--params FILE', 'instance parameters: a JSON object keyed by the yml parameter names'),
    ('--state FILE', f'token cache, last run and saved files (default {DEFAULT_STATE_FILE})'),
    ('--out DIR', f'where attachments and EML files are written (default {DEFAULT_OUT_DIR})'),
    ('--json', 'print one JSON document {"entries", "incidents", "last_run"} instead of text'),
    ('COMMAND --help', "a command's arguments, defaults and choices"),
)


def _main_file() -> str:
    return getattr(sys.modules.get('__main__'), '__file__', '') or 'MicrosoftGraphMail.py'


def _program() -> str:
    return f'python3 {os.path.basename(_main_file())}'


def _usage(command: str = 'COMMAND') -> str:
    return f'usage: {_program()} {command} [name=value ...] --params FILE [--state FILE] [--out DIR] [--json]'


def _load_commands() -> dict:
    """{name: yml command} for the platform's test-module and fetch-incidents and every command of the yml
    beside the module (read with PyYAML, which the runner needs; the integration does not)."""
    try:
        import yaml
    except ImportError:
        raise SystemExit('The shell runner reads the commands and their arguments from MicrosoftGraphMail.yml and '
                         'needs PyYAML for that: run bash scripts/bootstrap.sh or pip install -r requirements-dev.txt.') from None
    path = os.path.splitext(os.path.abspath(_main_file()))[0] + '.yml'
    try:
        with open(path, encoding='utf-8') as handle:
            integration = yaml.load(handle, Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader))
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f'{path}: cannot read the integration definition ({exc})') from None
    commands = {name: {'name': name, 'description': text, 'arguments': []} for name, text in PLATFORM_COMMANDS.items()}
    for command in ((integration or {}).get('script') or {}).get('commands') or []:
        commands[command['name']] = command
    return commands


def _first_sentence(text: Any) -> str:
    flat = ' '.join(str(text or '').split())
    match = re.match(r'(.+?[.!?])(?:\s|$)', flat)
    return match.group(1) if match else flat


def _overview(commands: dict) -> str:
    width = max(len(name) for name in commands) + 2
    lines = [_usage(), f'       {_program()} COMMAND --help', '', 'Commands:']
    lines += [f'  {name.ljust(width)}{_first_sentence(command.get("description"))}' for name, command in commands.items()]
    lines += ['', 'Options:'] + [f'  {flag.ljust(16)}{text}' for flag, text in OPTIONS_HELP]
    lines += ['', 'A parameter value "$ENV:NAME" is read from the environment variable NAME. '
                  'MGM_LOG_LEVEL=DEBUG shows the debug log on stderr (secrets redacted).',
              'See README.md, "Running from a shell".']
    return '\n'.join(lines)


def _argument_help(argument: dict) -> list:
    marks = [mark for mark, present in (('required', argument.get('required')),
                                        ('comma-separated list', argument.get('isArray')),
                                        ('deprecated', argument.get('deprecated'))) if present]
    text = ' '.join(str(argument.get('description') or '').split())
    if argument.get('defaultValue') not in (None, ''):
        text += f" Default: {argument['defaultValue']}."
    if argument.get('predefined'):
        text += ' Choices: ' + ', '.join(map(str, argument['predefined'])) + '.'
    head = f"  {argument['name']}" + (f" ({', '.join(marks)})" if marks else '')
    return [head] + textwrap.wrap(text, 100, initial_indent='      ', subsequent_indent='      ')


def _command_help(command: dict) -> str:
    lines = [_usage(command['name']), ''] + textwrap.wrap(' '.join(str(command.get('description') or '').split()), 100)
    arguments = command.get('arguments') or []
    lines += ['', 'Arguments:'] if arguments else ['', 'This command takes no arguments.']
    for argument in arguments:
        lines += _argument_help(argument)
    return '\n'.join(lines)


def _nearest(word: str, choices: list, cutoff: float) -> Optional[str]:
    by_lower = {choice.lower(): choice for choice in choices}
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=cutoff)
    return by_lower[found[0]] if found else None


def _checked_command(name: str, commands: dict) -> dict:
    if name in commands:
        return commands[name]
    near = _nearest(name, list(commands), 0.6)
    hint = f' Did you mean {near}?' if near else ''
    raise SystemExit(f"Unknown command '{name}'.{hint} `{_program()} --help` lists the commands.")


def _refuse_undeclared_arguments(command: dict, given: dict) -> None:
    """XSOAR refuses an argument a command does not declare; a typo must not fall back to a default silently."""
    declared = [argument['name'] for argument in command.get('arguments') or []]
    for name in given:
        if name in declared:
            continue
        near = _nearest(name, declared, 0.5)
        hint = f' Did you mean {near}?' if near else ''
        known = f" Its arguments: {', '.join(declared)}." if declared else ' It takes no arguments.'
        raise SystemExit(f"{command['name']} has no argument '{name}'.{hint}{known} "
                         f"(`{_program()} {command['name']} --help`)")


def _resolve_env_references(value: Any, label: str, where: str = '') -> Any:
    """Replaces "$ENV:NAME" values by the environment variable NAME; an unset variable is an error naming it."""
    if isinstance(value, dict):
        return {key: _resolve_env_references(item, label, f'{where}.{key}' if where else key) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_env_references(item, label, where) for item in value]
    if isinstance(value, str) and value.startswith('$ENV:'):
        name = value[len('$ENV:'):]
        if name not in os.environ:
            raise SystemExit(f'--params {label}: "{where}" is {value}, but the environment variable {name} is not set. '
                             f'Set it (export {name}=...) or write the value into the file.')
        return os.environ[name]
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


def _read_params(path: str) -> dict:
    params = _resolve_env_references(_read_json_file(path, '--params'), path)
    ca_bundle = params.pop(RUNNER_CA_BUNDLE_KEY, None)
    if ca_bundle:
        ca_path = os.path.join(os.path.dirname(os.path.abspath(path)), str(ca_bundle))
        if not os.path.isfile(ca_path):
            raise SystemExit(f'--params {path}: "{RUNNER_CA_BUNDLE_KEY}" names {ca_path}: no such file (start the '
                             'sandbox that writes it, or remove the key).')
        os.environ['REQUESTS_CA_BUNDLE'] = ca_path
    return params


def _parse_command_line(argv: list) -> None:
    options = {'--params': None, '--state': DEFAULT_STATE_FILE, '--out': DEFAULT_OUT_DIR}
    positional, wants_help = [], False
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in options:
            if index + 1 >= len(argv):
                raise SystemExit(f'{word} needs a value\n{_usage()}')
            options[word] = argv[index + 1]
            index += 2
            continue
        if word == '--json':
            _runtime.json_output = True
        elif word in ('-h', '--help'):
            wants_help = True
        else:
            positional.append(word)
        index += 1
    commands = _load_commands()
    if not positional:
        print(_overview(commands))
        raise SystemExit(0)
    command = _checked_command(positional[0], commands)
    if wants_help:
        print(_command_help(command))
        raise SystemExit(0)
    _runtime.command = positional[0]
    for pair in positional[1:]:
        name, separator, value = pair.partition('=')
        if not separator or not name:
            raise SystemExit(f'argument "{pair}" is not name=value\n{_usage(_runtime.command)}')
        _runtime.args[name] = value
    _refuse_undeclared_arguments(command, _runtime.args)
    _runtime.main_file = os.path.abspath(_main_file())
    _runtime.pass_on = [*(['--params', os.path.abspath(options['--params'])] if options['--params'] else []),
                        '--state', os.path.abspath(options['--state']), '--out', os.path.abspath(options['--out']),
                        *(['--json'] if _runtime.json_output else [])]
    if options['--params']:
        _runtime.params = _read_params(options['--params'])
    _runtime.state_label = options['--state']
    _runtime.state_path = os.path.abspath(options['--state'])
    _runtime.out_dir = os.path.abspath(options['--out'])
    _lock_state()
    try:
        _runtime.state.update(_read_state_file())
    except StateFileError as exc:
        raise SystemExit(str(exc)) from None
    os.makedirs(_runtime.out_dir, exist_ok=True)
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
    queued = (_runtime.state.get('last_run') or {}).get('pending')
    if isinstance(queued, list) and queued:
        print(f'{len(queued)} more mail(s) wait in the queue: the next fetch-incidents continues with them '
              '(at most fetch_limit per run).')


def _print_output() -> None:
    if _runtime.json_output:
        document = {'entries': _runtime.entries, 'incidents': _runtime.incidents,
                    'last_run': _runtime.state.get('last_run')}
        print(json.dumps(document, default=str))
        return
    for entry in _runtime.entries:
        is_error = isinstance(entry, dict) and entry.get('Type') == ERROR_ENTRY_TYPE
        print(_entry_text(entry), file=sys.stderr if is_error else sys.stdout)
    if _runtime.incidents is not None:
        _print_incidents()


def _follow_polling() -> None:
    """XSOAR runs a command again while its last entry carries polling keys (PollingCommand, PollingArgs: what
    CommonServerPython's ScheduledCommand adds). From a shell, show that entry on stderr as progress and run the
    command again at once with those arguments (the process is replaced by a fresh one: same params, state and output
    folder, so its exit status is the run's). The state lock is released first: the next run takes it."""
    last = _runtime.entries[-1] if _runtime.entries else None
    if not (isinstance(last, dict) and last.get('PollingCommand')) or any(
            isinstance(e, dict) and e.get('Type') == ERROR_ENTRY_TYPE for e in _runtime.entries):
        return
    print('\n'.join(_entry_text(last).strip().splitlines()[:3]), file=sys.stderr, flush=True)
    arguments = [f'{k}={v}' for k, v in (last.get('PollingArgs') or {}).items() if v is not None]
    started = _polling_chain_start()
    timeout = _polling_timeout_seconds(last)
    if timeout is not None and time.time() - started > timeout:
        _runtime.polling_timed_out = True
        print(f"Polling stopped: {last['PollingCommand']} has been polling for longer than its Timeout of {timeout} s, "
              'where XSOAR stops it too. What it has done is kept in the state file; to go on, run: '
              f"{last['PollingCommand']} {' '.join(arguments)}", file=sys.stderr)
        return
    command_line = [sys.executable, _runtime.main_file, str(last['PollingCommand']),
                    *arguments, *_runtime.pass_on]
    sys.stdout.flush()
    sys.stderr.flush()
    _release_state_lock()
    os.environ[POLLING_STARTED_VARIABLE] = repr(started)  # the next run measures the Timeout from the chain's start
    # exec, not a child process: hundreds of polling runs replace one another instead of nesting one Python each
    os.chdir(_runtime.invocation_dir)
    os.execv(sys.executable, command_line)


def _polling_chain_start() -> float:
    """When the first run of this polling chain started: a re-run inherits it through the environment."""
    try:
        return float(os.environ[POLLING_STARTED_VARIABLE])
    except (KeyError, ValueError):
        return _runtime.started_at


def _polling_timeout_seconds(entry: dict) -> Optional[float]:
    """The entry's polling Timeout in seconds (ScheduledCommand sends it as text), or None when it has none."""
    try:
        timeout = float(entry.get('Timeout'))
    except (TypeError, ValueError):
        return None
    return timeout if timeout > 0 else None


def _release_state_lock() -> None:
    if _runtime.lock_descriptor is not None:
        os.close(_runtime.lock_descriptor)
        _runtime.lock_descriptor = None


def _finish() -> None:
    """Commits the last run (only when the run completed without an error) and prints what the command produced.
    Exit code 1 when the command failed or its state could not be saved; never an ignored atexit exception."""
    if not _runtime.crashed:
        _follow_polling()
    failed = _runtime.crashed or _runtime.polling_timed_out or any(
        isinstance(e, dict) and e.get('Type') == ERROR_ENTRY_TYPE for e in _runtime.entries)
    try:
        if _runtime.pending_last_run is not None and not failed:
            _runtime.state['last_run'] = _runtime.pending_last_run
            try:
                _save_state(commit_last_run=True)
            except StateFileError as exc:
                print(f'Error: {exc}. The fetch is not delivered: without its last run the next fetch would return '
                      'the same mail again.', file=sys.stderr)
                failed = True
                _runtime.incidents = None
        _print_output()
    except BaseException as exc:  # an atexit callback must not fail silently: report it and exit 1
        print(f'Error: {exc}', file=sys.stderr)
        failed = True
    sys.stdout.flush()
    sys.stderr.flush()
    if failed:
        os._exit(1)


def _started_from_shell() -> bool:
    main_file = getattr(sys.modules.get('__main__'), '__file__', '') or ''
    return ('pytest' not in sys.modules and main_file.endswith('.py')
            and os.path.basename(main_file) != os.path.basename(__file__))


def _ensure_project_python() -> None:
    """Re-runs the command with the project's .venv when this Python lacks the runner's packages."""
    helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'scripts', 'project_python.py')
    spec = importlib.util.spec_from_file_location('mgm_project_python', helper)
    if not os.path.isfile(helper) or spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.ensure_project_python(_main_file(), RUNNER_PACKAGES)


def _report_uncaught(kind: type, value: BaseException, trace: Any) -> None:
    """A failed fetch raises (so the platform keeps the last run); print it as a message, not a traceback."""
    _runtime.crashed = True
    if os.environ.get('MGM_LOG_LEVEL', '').upper() == 'DEBUG':
        sys.__excepthook__(kind, value, trace)
    elif isinstance(value, KeyboardInterrupt):
        print('Interrupted.', file=sys.stderr)
    else:
        print(f'Error: {value or kind.__name__}', file=sys.stderr)


class _StderrFormatter(logging.Formatter):
    """demisto.info lines (progress of long waits, fetch notes) as plain lines; other records with their level."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == _log.name and record.levelno == logging.INFO:
            return record.getMessage()
        return f'{record.levelname} {record.name}: {record.getMessage()}'


def _configure_logging() -> None:
    requested = logging.getLevelName(os.environ.get('MGM_LOG_LEVEL', '').upper() or 'WARNING')
    level = requested if isinstance(requested, int) else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StderrFormatter())
    logging.basicConfig(level=level, handlers=[handler])
    _log.setLevel(min(level, logging.INFO))


if _started_from_shell():
    _ensure_project_python()
    sys.excepthook = _report_uncaught
    _configure_logging()
    _parse_command_line(sys.argv[1:])
    atexit.register(_finish)
