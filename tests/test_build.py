"""The unified script runs as XSOAR runs it, and the import lines the unifier strips are safe to strip.

Uses scripts/build.py's builtin unifier (the SDK's stripping rules), so no demisto-sdk install is needed.
"""
import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from tests.e2e_support import instance_params

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location('mgm_build', ROOT / 'scripts' / 'build.py')
build = importlib.util.module_from_spec(_spec)
sys.modules['mgm_build'] = build
_spec.loader.exec_module(build)

SOURCE = build.MODULE_PATH.read_text(encoding='utf-8')
IMPORT_LINE = 'import demistomock as demisto'


@pytest.fixture(scope='module')
def unified() -> dict:
    return build.unify_builtin()


@pytest.fixture
def sandbox_ca(fresh_sandbox, monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', fresh_sandbox.ca_path)
    monkeypatch.delenv('CURL_CA_BUNDLE', raising=False)
    return fresh_sandbox


# ------------------------------------------------------------------ the module's import lines
def test_demistomock_import_is_one_unindented_top_level_line():
    occurrences = [m.start() for m in re.finditer(re.escape(IMPORT_LINE), SOURCE)]
    assert len(occurrences) == 1
    line_no = SOURCE.count('\n', 0, occurrences[0]) + 1
    line = SOURCE.splitlines()[line_no - 1]
    assert line.startswith(IMPORT_LINE)
    top_level = [node for node in ast.parse(SOURCE).body if isinstance(node, ast.Import)
                 and [a.name for a in node.names] == ['demistomock']]
    assert [node.lineno for node in top_level] == [line_no]
    build.check_platform_imports(SOURCE)  # and nothing else the unifier would strip or inline


DECOYS = {
    'comment': '# fallback: import demistomock as demisto\n',
    'indented try/except fallback': 'try:\n    demisto\nexcept NameError:\n    import demistomock as demisto\n',
    'docstring': 'def helper():\n    """Never write import demistomock as demisto here."""\n',
    'string literal': "HINT = 'import demistomock as demisto'\n",
    'alias with a longer name': 'import demistomock as demisto_local\n',
    'second CommonServerPython import': 'from CommonServerPython import *\nfrom CommonServerPython import *\n',
    'indented CommonServerPython import': 'if True:\n    from CommonServerPython import *\n',
    'ApiModule import in a comment': '# from MicrosoftApiModule import *\n',
}


@pytest.mark.parametrize('decoy', DECOYS.values(), ids=DECOYS.keys())
def test_a_decoy_anywhere_in_the_module_is_caught(decoy):
    lines = SOURCE.splitlines(keepends=True)
    middle = len(lines) // 2
    while lines[middle].strip() or lines[middle - 1].startswith((' ', '\t')):  # a blank line between top-level blocks
        middle += 1
    doctored = ''.join(lines[:middle] + ['\n', decoy, '\n'] + lines[middle:])
    compile(doctored, 'doctored', 'exec')  # the decoy is valid Python: only the unifier would break it
    with pytest.raises(build.BuildError, match='line'):
        build.check_platform_imports(doctored)


def test_the_unifier_would_break_an_indented_fallback_import():
    fallback = 'try:\n    demisto\nexcept NameError:\n    import demistomock as demisto\n'
    compile(fallback, 'fallback', 'exec')
    with pytest.raises(SyntaxError):  # an empty except block: why check_platform_imports refuses it
        compile(build.strip_platform_imports(fallback), 'stripped', 'exec')


def test_a_missing_import_line_is_caught():
    with pytest.raises(build.BuildError, match='missing'):
        build.check_platform_imports(SOURCE.replace(IMPORT_LINE, 'demisto = None'))


def test_stripping_leaves_no_import_line_and_keeps_line_numbers(unified):
    script = unified['script']['script']
    assert build.find_platform_imports(script) == []
    assert IMPORT_LINE not in script
    assert script.count('\n') == SOURCE.count('\n')  # tracebacks in XSOAR point at the same lines
    assert script == build.strip_platform_imports(SOURCE)
    compile(script, 'unified', 'exec')


def test_unified_yml_round_trips(unified):
    reloaded = build.load_yaml(build.dump_yaml(unified))
    assert reloaded == unified
    original = build.load_yaml(build.YML_PATH.read_text(encoding='utf-8'))
    assert reloaded['script']['commands'] == original['script']['commands']
    assert reloaded['configuration'] == original['configuration']
    assert reloaded['detaileddescription'] == build.DESCRIPTION_PATH.read_text(encoding='utf-8')
    assert ('image' in reloaded) == build.IMAGE_PATH.is_file()


# ------------------------------------------------------------------ running the unified script
def test_entry_guard_fires_only_without_a_module_name(unified):
    script = unified['script']['script']
    as_module = build.run_unified(script, 'no-such-command', {}, module_name='MicrosoftGraphMail')
    assert as_module.results == []
    as_platform = build.run_unified(script, 'no-such-command', {})
    assert [entry['Type'] for entry in as_platform.results] == [4]
    assert as_platform.stdout == ''


@pytest.mark.parametrize('mode', ['client_secret', 'certificate', 'oproxy'])
def test_unified_script_answers_test_module_ok(unified, sandbox_ca, mode):
    params = instance_params(sandbox_ca.info, mode)
    assert build.test_module_result(unified['script']['script'], params) == ['ok']


def test_unified_script_test_module_reads_the_fetch_mailbox(unified, sandbox_ca):
    params = instance_params(sandbox_ca.info, mailbox_to_fetch='soc@contoso.com', folder_to_fetch='Inbox')
    sandbox_ca.reset_stats()
    assert build.test_module_result(unified['script']['script'], params) == ['ok']
    assert any('/mailfolders' in path.lower() for path in _paths(sandbox_ca))  # not just a token


def test_build_check_rejects_a_failing_test_module(unified, sandbox_ca):
    params = instance_params(sandbox_ca.info, credentials={'password': 'wrong-secret'})
    with pytest.raises(build.BuildError, match="did not answer 'ok'"):
        build.test_module_result(unified['script']['script'], params)


def _paths(sandbox) -> list:
    return [str(entry.get('path', '')) for entry in sandbox.log()]
