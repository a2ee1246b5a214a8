"""The README's command reference is exactly what scripts/generate_docs.py makes of the yml."""
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location('mgm_generate_docs', ROOT / 'scripts' / 'generate_docs.py')
docs = importlib.util.module_from_spec(_spec)
sys.modules['mgm_generate_docs'] = docs
_spec.loader.exec_module(docs)

README = (ROOT / 'README.md').read_text(encoding='utf-8')
INTEGRATION = docs.load_integration()
COMMANDS = INTEGRATION['script']['commands']
HINT = 'README.md is out of date with MicrosoftGraphMail.yml: run `python scripts/generate_docs.py`'


def test_readme_reference_is_what_the_yml_generates():
    assert docs.generated_part(README) == docs.render(INTEGRATION), HINT


def test_check_mode_agrees():
    assert docs.main(['--check']) == 0, HINT


def test_every_yml_command_is_documented_in_yml_order():
    reference = docs.generated_part(README)
    headings = re.findall(r'^### (\S+)$', reference, flags=re.MULTILINE)
    documented = [name for name in headings if name not in ('Instance', 'Commands')]
    assert documented == ['test-module', 'fetch-incidents'] + [command['name'] for command in COMMANDS]
    for command in docs.PLATFORM_COMMANDS + COMMANDS:
        assert f"[{command['name']}](#{command['name']})" in reference


def test_every_parameter_argument_and_output_is_in_the_reference():
    reference = docs.generated_part(README)
    for param in INTEGRATION['configuration']:
        assert f"| `{param['name']}` |" in reference
    for command in COMMANDS:
        section = reference.split(f"### {command['name']}\n", 1)[1].split('\n### ', 1)[0]
        for argument in command.get('arguments') or []:
            assert f"| `{argument['name']}` |" in section, (command['name'], argument['name'])
        for output in command.get('outputs') or []:
            assert f"| `{output['contextPath']}` |" in section, (command['name'], output['contextPath'])


@pytest.mark.parametrize('command', docs.PLATFORM_COMMANDS + COMMANDS,
                         ids=[c['name'] for c in docs.PLATFORM_COMMANDS + COMMANDS])
def test_example_line_runs_the_command_with_its_required_arguments(command):
    words = shlex.split(docs.example_line(command))
    assert words[:3] == ['python3', 'MicrosoftGraphMail.py', command['name']]
    assert words[-2:] == ['--params', 'params.json']
    given = dict(word.split('=', 1) for word in words[3:-2])
    needed = [a['name'] for a in command.get('arguments') or []
              if a.get('required') or a['name'] in docs.EXAMPLE_ARGUMENTS.get(command['name'], ())]
    assert list(given) == needed
    assert all(given.values())


def test_the_send_mail_example_names_a_recipient():
    send_mail = next(c for c in COMMANDS if c['name'] == 'send-mail')
    assert {'to=TO', 'from=FROM'} <= set(shlex.split(docs.example_line(send_mail)))


@pytest.mark.parametrize('command', COMMANDS, ids=[c['name'] for c in COMMANDS])
def test_no_two_outputs_of_a_command_share_a_description(command):
    descriptions = [o.get('description') for o in command.get('outputs') or []]
    assert len(descriptions) == len(set(descriptions)), command['name']


def test_readme_has_no_contract_jargon_in_headers():
    assert 'anchor §' not in README


def test_markers_are_required_once():
    with pytest.raises(docs.DocsError):
        docs.split_readme(README.replace(docs.END, ''))
    with pytest.raises(docs.DocsError):
        docs.split_readme(README + '\n' + docs.BEGIN + '\n')


def test_generation_changes_only_the_text_between_the_markers():
    head, _, tail = docs.split_readme(README)
    regenerated = docs.updated_readme(head + 'stale\n' + tail, INTEGRATION)
    assert regenerated == README
    assert docs.updated_readme(regenerated, INTEGRATION) == regenerated


def test_table_cells_escape_pipes_and_html():
    assert docs.cell('a | b <c>\n d') == 'a \\| b &lt;c&gt; d'
