"""Builds the unified integration yml that XSOAR imports, and checks that it runs.

    python scripts/build.py [--unifier auto|sdk|builtin] [--output PATH] [--keep-stage]
    python scripts/build.py --stage-for-validation DIR      (used by scripts/validate.sh)

Output: dist/integration-MicrosoftGraphMail.yml, the integration yml with the module embedded as
`script.script`, `detaileddescription` from MicrosoftGraphMail_description.md and `image` from
MicrosoftGraphMail_image.png when that file exists.

Unifiers:
- sdk (preferred; `auto` picks it): `demisto-sdk prepare-content` run on a temporary pack
  (Packs/MicrosoftGraphMail/{pack_metadata.json, Integrations/MicrosoftGraphMail/...}) in a temporary git
  repo. demisto-sdk lives in .venv-tools (requirements-tools.txt, installed by tools/bootstrap-tools.sh
  on first use), never in the project's .venv.
- builtin (fallback, and what tests/test_build.py uses): does what the SDK's unifier does to a
  self-contained module: removes the platform import lines with the SDK's own four patterns and embeds
  the code. It adds no `register_module_line` wrapper and no pack-version line (the runtime needs
  neither), and it refuses a module that imports an ApiModule (it cannot inline one).
  `auto` falls back to it only when demisto-sdk cannot be installed.

Whatever the unifier, the output is checked before the build succeeds:
  (a) the embedded script has no demistomock / CommonServerPython import left, and is exactly this
      module with the import lines removed (plus the SDK's wrapper lines);
  (b) it compiles;
  (c) it runs through `exec` in a fresh globals dict that holds only a stand-in `demisto` (and stubs
      of `register_module_line`/`__line__`), without `__name__`, so the `builtins` branch of the entry
      guard must fire, as inside XSOAR;
  (d) `test-module` answers 'ok' against the local sandbox (started in this process), with instance
      parameters from tests/e2e_support.instance_params and REQUESTS_CA_BUNDLE set to its CA.
"""
import argparse
import ast
import base64
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

ROOT = Path(__file__).resolve().parent.parent
NAME = 'MicrosoftGraphMail'
PACK = 'MicrosoftGraphMail'
MODULE_PATH = ROOT / f'{NAME}.py'
YML_PATH = ROOT / f'{NAME}.yml'
DESCRIPTION_PATH = ROOT / f'{NAME}_description.md'
IMAGE_PATH = ROOT / f'{NAME}_image.png'
TEST_PATH = ROOT / f'{NAME}_test.py'
PACK_METADATA_PATH = ROOT / 'tools' / 'pack_metadata.json'
DEFAULT_OUTPUT = ROOT / 'dist' / f'integration-{NAME}.yml'
TOOLS_VENV = ROOT / '.venv-tools'
SDK_BIN = TOOLS_VENV / 'bin' / 'demisto-sdk'
IMAGE_PREFIX = 'data:image/png;base64,'

# The patterns the SDK's unifier removes with re.sub. They are not anchored to a line start and eat a
# trailing comment, so the same text anywhere else in the module (indented, in a comment, docstring or
# string) would be cut out too and break the code: check_platform_imports() rejects that.
STRIP_PATTERNS = (
    r'import demistomock as demisto[ \t]*(#.*)?',
    r'from CommonServerPython import \*[ \t]*(#.*)?',
    r'from CommonServerUserPython import \*[ \t]*(#.*)?',
    r'from __future__ import print_function[ \t]*(#.*)?',
)
# The SDK replaces each match with the source of Packs/ApiModules/Scripts/<Name>/<Name>.py (comments too).
API_MODULE_IMPORT = r'from ([\w\d]+ApiModule) import \*(?:  # noqa: E402)?'
PLATFORM_MODULES = ('demistomock', 'CommonServerPython', 'CommonServerUserPython')
# The import of demistomock is what makes the module run outside XSOAR; it must be there exactly once.
REQUIRED_PATTERN = STRIP_PATTERNS[0]


class BuildError(Exception):
    """The sources or the unified output are not fit to ship."""


# ------------------------------------------------------------------------------------------ sources
def _line_of(text: str, offset: int) -> int:
    return text.count('\n', 0, offset) + 1


def _top_level_import_lines(source: str) -> dict[int, str]:
    """Line number -> imported module, for the unindented import statements of the module body."""
    lines = {}
    for node in ast.parse(source).body:
        if node.col_offset != 0:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                lines[node.lineno] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            lines[node.lineno] = node.module
    return lines


def check_platform_imports(source: str) -> None:
    """Every text the unifier removes must be a whole, unindented, top-level import line, once.

    `import demistomock as demisto` must appear exactly once; the CommonServer*/print_function lines at
    most once each; `from <X>ApiModule import *` never (this module is self-contained).
    Raises BuildError naming the offending lines.
    """
    problems = []
    top_level = _top_level_import_lines(source)
    source_lines = source.splitlines()
    for pattern in STRIP_PATTERNS:
        matches = list(re.finditer(pattern, source))
        if pattern == REQUIRED_PATTERN and not matches:
            problems.append('`import demistomock as demisto` is missing: the module cannot run outside XSOAR')
        if len(matches) > 1:
            where = ', '.join(str(_line_of(source, m.start())) for m in matches)
            problems.append(f'the text matched by {pattern!r} occurs {len(matches)} times (lines {where}); '
                            'it must occur once, as the import line itself')
        for match in matches:
            line_no = _line_of(source, match.start())
            line = source_lines[line_no - 1]
            whole_line = line.startswith(match.group(0)) and not line[len(match.group(0)):].strip()
            if not whole_line or line_no not in top_level:
                problems.append(f'line {line_no}: {line.strip()!r} is not an unindented top-level import line; '
                                'the unifier would cut this text out and leave broken code')
    for match in re.finditer(API_MODULE_IMPORT, source):
        line_no = _line_of(source, match.start())
        problems.append(f'line {line_no}: {match.group(0)!r}: the unifier would try to inline '
                        f'Packs/ApiModules/Scripts/{match.group(1)}; this module must not reference an ApiModule')
    if problems:
        raise BuildError('platform import lines:\n  - ' + '\n  - '.join(problems))


def strip_platform_imports(source: str) -> str:
    """What the SDK's unifier does to the code: re.sub of each pattern with ''. Line count is kept."""
    for pattern in STRIP_PATTERNS:
        source = re.sub(pattern, '', source)
    return source


def find_platform_imports(script: str) -> list[str]:
    """Import statements of demistomock/CommonServer*, or texts the unifier removes, left in a script."""
    found = [f'line {_line_of(script, m.start())}: {m.group(0)!r}'
             for pattern in STRIP_PATTERNS[:3] for m in re.finditer(pattern, script)]
    for node in ast.walk(ast.parse(script)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or '']
        found += [f'line {node.lineno}: import of {name}' for name in names if name.split('.')[0] in PLATFORM_MODULES]
    return found


# ------------------------------------------------------------------------------------------ yml
def load_yaml(text: str) -> Any:
    import yaml
    return yaml.safe_load(text)


def dump_yaml(data: Any) -> str:
    """YAML with multi-line strings (the script, the description) as literal blocks when possible."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def represent_str(dumper: yaml.SafeDumper, value: str) -> Any:
        style = '|' if '\n' in value else None
        return dumper.represent_scalar('tag:yaml.org,2002:str', value, style=style)

    Dumper.add_representer(str, represent_str)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=10_000)


def unify_builtin(module: Path = MODULE_PATH, yml: Path = YML_PATH, description: Path = DESCRIPTION_PATH,
                  image: Path = IMAGE_PATH) -> dict:
    """The unified integration as a dict, without demisto-sdk (see the module docstring)."""
    source = module.read_text(encoding='utf-8')
    check_platform_imports(source)
    data = load_yaml(yml.read_text(encoding='utf-8'))
    existing = data['script'].get('script', '')
    if existing not in ('', '-', None):
        raise BuildError(f'{yml.name}: script.script must be "-" (the code comes from {module.name})')
    data['script']['script'] = strip_platform_imports(source)
    if image.is_file():
        data['image'] = IMAGE_PREFIX + base64.b64encode(image.read_bytes()).decode('ascii')
    if description.is_file() and description.read_text(encoding='utf-8').strip():
        data['detaileddescription'] = description.read_text(encoding='utf-8')
    return data


# ------------------------------------------------------------------------------------------ pack stage
def _git(repo: Path, *args: str) -> None:
    subprocess.run(['git', '-c', 'user.name=build', '-c', 'user.email=build@localhost', '-c', 'commit.gpgsign=false',
                    '-c', 'core.hooksPath=/dev/null', *args], cwd=repo, check=True, capture_output=True, text=True)


def stage_pack(repo: Path, for_validation: bool = False) -> Path:
    """A git repo holding the pack layout demisto-sdk expects; returns the integration folder.

    For prepare-content only what ends up in the unified yml is staged. The integration README is left
    out on purpose: with one, the SDK appends a link to the documentation of the existing XSOAR
    integration of the same id. For validation the READMEs and the unit tests are staged too.
    """
    repo.mkdir(parents=True, exist_ok=True)
    if any(repo.iterdir()):
        raise BuildError(f'{repo} is not empty')
    package = repo / 'Packs' / PACK / 'Integrations' / NAME
    package.mkdir(parents=True)
    metadata = json.loads(PACK_METADATA_PATH.read_text(encoding='utf-8'))
    (repo / 'Packs' / PACK / 'pack_metadata.json').write_text(json.dumps(metadata, indent=4) + '\n', encoding='utf-8')
    for path in (MODULE_PATH, YML_PATH, DESCRIPTION_PATH, IMAGE_PATH):
        if path.is_file():
            shutil.copy2(path, package / path.name)
    if for_validation:
        pack_readme = f"## {metadata['name']}\n\n{metadata['description']}\n"
        (repo / 'Packs' / PACK / 'README.md').write_text(pack_readme, encoding='utf-8')
        shutil.copy2(ROOT / 'README.md', package / 'README.md')
        if TEST_PATH.is_file():
            shutil.copy2(TEST_PATH, package / TEST_PATH.name)
    # The SDK reads the pack through git and wants a commit on `master`.
    _git(repo, 'init', '-q')
    _git(repo, 'symbolic-ref', 'HEAD', 'refs/heads/master')
    _git(repo, 'add', '-A')
    _git(repo, 'commit', '-q', '-m', 'stage')
    return package


def sdk_environment(stage: Path) -> dict:
    env = dict(os.environ, DEMISTO_SDK_IGNORE_CONTENT_WARNING='1',
               DEMISTO_SDK_LOG_FILE_PATH=str(stage / '.sdk-logs'))
    env.pop('VIRTUAL_ENV', None)
    return env


def ensure_sdk() -> bool:
    """Installs or updates .venv-tools (a no-op when it matches requirements-tools.txt).

    False when demisto-sdk cannot be installed here.
    """
    completed = subprocess.run(['bash', '-c', f'source "{ROOT}/tools/bootstrap-tools.sh"'], cwd=ROOT)
    return completed.returncode == 0 and SDK_BIN.is_file()


def unify_with_sdk(stage: Path) -> str:
    """`demisto-sdk prepare-content` on the staged integration; returns the unified yml text."""
    stage_pack(stage)
    out_dir = stage / 'out'
    out_dir.mkdir()
    integration = f'Packs/{PACK}/Integrations/{NAME}'
    completed = subprocess.run([str(SDK_BIN), 'prepare-content', '-i', integration, '-o', str(out_dir)], cwd=stage,
                               env=sdk_environment(stage), capture_output=True, text=True, timeout=600)
    produced = out_dir / f'integration-{NAME}.yml'
    if completed.returncode != 0 or not produced.is_file():
        raise BuildError(f'demisto-sdk prepare-content failed (exit {completed.returncode}):\n'
                         f'{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}')
    return produced.read_text(encoding='utf-8')


def sdk_version() -> str:
    completed = subprocess.run([str(SDK_BIN), '--version'], capture_output=True, text=True,
                               env=dict(os.environ, DEMISTO_SDK_IGNORE_CONTENT_WARNING='1'))
    match = re.search(r'version: (\S+)', completed.stdout + completed.stderr)
    return match.group(1) if match else 'unknown'


# ------------------------------------------------------------------------------------------ running it
@dataclass
class StandInDemisto:
    """The `demisto` global the XSOAR runner provides, reduced to what an integration run needs."""
    command_name: str
    instance_params: dict
    command_args: dict = field(default_factory=dict)
    results_sent: list = field(default_factory=list)
    incidents_sent: Optional[list] = None
    last_run: dict = field(default_factory=dict)
    integration_context: dict = field(default_factory=dict)
    context_version: int = 0
    logs: list = field(default_factory=list)

    @property
    def callingContext(self) -> dict:  # noqa: N802 - the platform's name
        return {'command': self.command_name, 'params': self.instance_params, 'args': self.command_args,
                'integration': True, 'context': {'IntegrationInstance': f'{NAME}_build_check',
                                                 'IntegrationBrand': NAME, 'Inv': {'id': '1'}}}

    def command(self) -> str:
        return self.command_name

    def params(self) -> dict:
        return self.instance_params

    def args(self) -> dict:
        return self.command_args

    def results(self, entry: Any) -> None:
        for item in entry if isinstance(entry, list) else [entry]:
            json.dumps(item)  # the runner sends results as JSON
            self.results_sent.append(item)

    def incidents(self, incidents: list) -> None:
        json.dumps(incidents)
        self.incidents_sent = incidents

    def getLastRun(self) -> dict:  # noqa: N802
        return self.last_run

    def setLastRun(self, obj: dict) -> None:  # noqa: N802
        self.last_run = obj

    def getIntegrationContext(self) -> dict:  # noqa: N802
        return self.integration_context

    def setIntegrationContext(self, context: dict) -> None:  # noqa: N802
        json.dumps(context)
        self.integration_context = context
        self.context_version += 1

    def getIntegrationContextVersioned(self, refresh: bool = False) -> dict:  # noqa: N802
        return {'context': self.integration_context, 'version': self.context_version}

    def setIntegrationContextVersioned(self, context: dict, version: int = -1, sync: bool = False) -> None:  # noqa: N802
        if version != -1 and version < self.context_version:
            raise ValueError('version mismatch')
        self.setIntegrationContext(context)

    def investigation(self) -> dict:
        return {'id': '1'}

    def integrationInstance(self) -> str:  # noqa: N802
        return f'{NAME}_build_check'

    def demistoVersion(self) -> dict:  # noqa: N802
        return {'version': '8.9.0', 'buildNumber': '0'}

    def uniqueFile(self) -> str:  # noqa: N802
        return str(uuid.uuid4())

    def getFilePath(self, entry_id: str) -> dict:  # noqa: N802
        raise ValueError(f'no file entry {entry_id} in the build check')

    def debug(self, *parts: Any) -> None:
        self.logs.append(('debug', ' '.join(map(str, parts))))

    def info(self, *parts: Any) -> None:
        self.logs.append(('info', ' '.join(map(str, parts))))

    def error(self, *parts: Any) -> None:
        self.logs.append(('error', ' '.join(map(str, parts))))

    def log(self, *parts: Any) -> None:
        self.logs.append(('log', ' '.join(map(str, parts))))


@dataclass
class UnifiedRun:
    demisto: StandInDemisto
    stdout: str

    @property
    def results(self) -> list:
        return self.demisto.results_sent


def _register_module_line(name: str, start_end: str, line: int, wrapper: int = 0) -> None:
    """Stub of the CommonServerPython helper the SDK's wrapper lines call."""


def _line() -> int:
    return 0


def run_unified(script: str, command: str, params: dict, args: Optional[dict] = None,
                module_name: Optional[str] = None) -> UnifiedRun:
    """Runs unified code the way the XSOAR runner does: compile + exec in fresh globals.

    The globals hold the stand-in `demisto` and the two stubs only; with no `__name__` in them the name
    resolves through builtins to 'builtins'. `module_name` puts a `__name__` in (to show the guard).
    SystemExit is swallowed as the runner does; anything printed to stdout is returned (the runner's
    stdout is its protocol channel, so it must stay empty).
    """
    demisto = StandInDemisto(command, params, dict(args or {}))
    namespace: dict = {'demisto': demisto, 'register_module_line': _register_module_line, '__line__': _line}
    if module_name is not None:
        namespace['__name__'] = module_name
    code = compile(script, f'<unified {NAME}>', 'exec')
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        try:
            exec(code, namespace)  # noqa: S102 - this is what the platform does with the script
        except SystemExit:
            pass
    return UnifiedRun(demisto, stdout.getvalue())


@contextlib.contextmanager
def sandbox_environment(ca_path: str) -> Iterator[None]:
    """Trust the sandbox CA and hide host settings that would steer authentication elsewhere."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(('MSAL_', 'IDENTITY_', 'MSI_', 'IMDS_')) or key == 'CURL_CA_BUNDLE':
            del os.environ[key]
    os.environ['REQUESTS_CA_BUNDLE'] = ca_path
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_module_result(script: str, params: dict) -> list:
    """The entries `test-module` sent; raises BuildError unless that is exactly ['ok']."""
    run = run_unified(script, 'test-module', params)
    if run.stdout:
        raise BuildError(f'the unified script wrote to stdout (the runner protocol channel): {run.stdout[:500]!r}')
    if run.results != ['ok']:
        raise BuildError(f"test-module did not answer 'ok': {json.dumps(run.results, default=str)[:1000]}")
    return run.results


def check_against_sandbox(script: str) -> list[str]:
    """(d): test-module against the sandbox, token only and with a fetch mailbox and folder."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from sandbox import Sandbox
    from tests.e2e_support import instance_params

    report = []
    with tempfile.TemporaryDirectory(prefix='mgm-build-sandbox-') as state_dir, Sandbox(state_dir=state_dir) as sandbox:
        info = sandbox.info
        mailbox = next((m for m in info['mailboxes'] if m.startswith('soc@')), info['mailboxes'][0])
        with sandbox_environment(sandbox.ca_path):
            for label, params in (('client secret', instance_params(info)),
                                  (f'client secret, fetch mailbox {mailbox}',
                                   instance_params(info, mailbox_to_fetch=mailbox))):
                test_module_result(script, params)
                report.append(f"(d) test-module against the sandbox ({label}): 'ok'")
    return report


# ------------------------------------------------------------------------------------------ checks
def check_unified(text: str, sandbox_check: bool = True) -> list[str]:
    """Checks (a)-(d) of the module docstring on unified yml text; returns the report lines."""
    data = load_yaml(text)
    source = MODULE_PATH.read_text(encoding='utf-8')
    original = load_yaml(YML_PATH.read_text(encoding='utf-8'))
    script = data['script']['script']
    report = []

    leftovers = find_platform_imports(script)
    if leftovers:
        raise BuildError('(a) platform imports left in the unified script: ' + '; '.join(leftovers))
    if strip_platform_imports(source) not in script:
        raise BuildError(f'(a) the unified script is not {MODULE_PATH.name} with the import lines removed')
    extra = [line for line in script.replace(strip_platform_imports(source), '').splitlines() if line.strip()]
    report.append('(a) no demistomock/CommonServerPython import left; code = module minus its import line'
                  + (f' + {len(extra)} line(s) added by the unifier' if extra else ''))

    compile(script, f'<unified {NAME}>', 'exec')
    report.append(f'(b) compiles ({len(script.splitlines())} lines)')

    for key in ('commonfields', 'name', 'display', 'category', 'configuration'):
        if data.get(key) != original.get(key):
            raise BuildError(f'unified yml: {key!r} differs from {YML_PATH.name}')
    if [c['name'] for c in data['script']['commands']] != [c['name'] for c in original['script']['commands']]:
        raise BuildError(f'unified yml: the commands differ from {YML_PATH.name}')
    description = DESCRIPTION_PATH.read_text(encoding='utf-8').strip() if DESCRIPTION_PATH.is_file() else ''
    if description and not str(data.get('detaileddescription', '')).strip().startswith(description):
        raise BuildError(f'unified yml: detaileddescription is not {DESCRIPTION_PATH.name}')
    if IMAGE_PATH.is_file():
        if data.get('image') != IMAGE_PREFIX + base64.b64encode(IMAGE_PATH.read_bytes()).decode('ascii'):
            raise BuildError(f'unified yml: image is not {IMAGE_PATH.name}')
    report.append(f'    yml: {len(data["script"]["commands"])} commands, {len(data["configuration"])} parameters, '
                  f'detaileddescription {"set" if data.get("detaileddescription") else "absent"}, '
                  f'image {"set" if data.get("image") else f"absent (no {IMAGE_PATH.name})"}')

    guard = run_unified(script, 'no-such-command', {}, module_name='MicrosoftGraphMail')
    if guard.results:
        raise BuildError('(c) the script ran main() although __name__ was a module name: the entry guard is wrong')
    run = run_unified(script, 'no-such-command', {})
    errors = [entry for entry in run.results if isinstance(entry, dict) and entry.get('Type') == 4]
    if not errors:
        raise BuildError('(c) exec without __name__ sent no entry: the `builtins` branch of the entry guard did not '
                         f'call main() (results: {run.results!r})')
    report.append('(c) exec in fresh globals without __name__: the builtins guard calls main() '
                  '(an unknown command gets an error entry; with a module __name__ nothing runs)')
    if sandbox_check:
        report += check_against_sandbox(script)
    return report


# ------------------------------------------------------------------------------------------ command line
def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--unifier', choices=('auto', 'sdk', 'builtin'), default='auto',
                        help='auto: demisto-sdk, installing .venv-tools if needed; the builtin unifier only '
                             'when the SDK cannot be installed (default: auto)')
    parser.add_argument('--output', type=Path, default=DEFAULT_OUTPUT, help=f'default: {DEFAULT_OUTPUT.relative_to(ROOT)}')
    parser.add_argument('--keep-stage', action='store_true', help='keep the temporary pack repo and print its path')
    parser.add_argument('--stage-for-validation', type=Path, metavar='DIR',
                        help='only create the pack repo for `demisto-sdk validate` in DIR (must be empty or absent)')
    options = parser.parse_args(argv)

    if options.stage_for_validation:
        check_platform_imports(MODULE_PATH.read_text(encoding='utf-8'))
        package = stage_pack(options.stage_for_validation.resolve(), for_validation=True)
        print(package)
        return 0

    unifier = options.unifier
    if unifier in ('auto', 'sdk') and not ensure_sdk():
        if unifier == 'sdk':
            raise BuildError('demisto-sdk could not be installed into .venv-tools (see tools/bootstrap-tools.sh)')
        print('WARNING: demisto-sdk could not be installed; using the builtin unifier', file=sys.stderr)
        unifier = 'builtin'
    else:
        unifier = 'builtin' if unifier == 'builtin' else 'sdk'

    stage = Path(tempfile.mkdtemp(prefix='mgm-build-'))
    try:
        if unifier == 'sdk':
            check_platform_imports(MODULE_PATH.read_text(encoding='utf-8'))
            text = unify_with_sdk(stage / 'repo')
            how = f'demisto-sdk {sdk_version()} prepare-content'
        else:
            text = dump_yaml(unify_builtin())
            how = 'builtin unifier (scripts/build.py)'
        report = check_unified(text)
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_text(text, encoding='utf-8')
    finally:
        if options.keep_stage:
            print(f'stage kept: {stage}')
        else:
            shutil.rmtree(stage, ignore_errors=True)
    print(f'unified with {how}')
    for line in report:
        print('  ' + line)
    shown = options.output.relative_to(ROOT) if options.output.is_relative_to(ROOT) else options.output
    print(f'wrote {shown} ({options.output.stat().st_size} bytes)')
    return 0


if __name__ == '__main__':
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from project_python import ensure_project_python
    ensure_project_python(__file__, ('cryptography', 'msal', 'requests', 'yaml'))
    try:
        sys.exit(main())
    except BuildError as error:
        print(f'build failed: {error}', file=sys.stderr)
        sys.exit(1)
