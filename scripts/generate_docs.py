"""Writes the README's command reference from MicrosoftGraphMail.yml.

    python scripts/generate_docs.py           rewrite the reference in README.md
    python scripts/generate_docs.py --check   exit 1 (and show a diff) when README.md is not up to date

Only the text between the two marker lines below is generated; the rest of README.md is left alone.
The reference holds the instance parameters and, per command in yml order: its description, an
example command line for the shell runner, its inputs and its context outputs.
"""
import argparse
import difflib
import shlex
import sys
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
YML_PATH = ROOT / 'MicrosoftGraphMail.yml'
README_PATH = ROOT / 'README.md'
MODULE_FILE = 'MicrosoftGraphMail.py'
PYTHON = 'python3'
# Commands XSOAR itself runs (not in the yml's command list), documented with the others.
PLATFORM_COMMANDS = [
    {'name': 'test-module',
     'description': "What XSOAR's Test button runs: checks that a token is issued and, when a fetch mailbox is set, "
                    "that the mailbox and the fetch folder can be read. Answers 'ok', or says which part failed."},
    {'name': 'fetch-incidents',
     'description': 'What XSOAR runs on the fetch interval when Fetch incidents is set: every mail that arrived in the '
                    'fetch folder becomes one incident (see How fetch works). From a shell the last run is kept in '
                    'the --state file, and the incidents are printed.'},
]
# Arguments the yml does not mark required (the existing integration's contract) but the command needs to do
# anything useful; the example line shows them.
EXAMPLE_ARGUMENTS = {'send-mail': ('to', 'from')}
BEGIN = '<!-- BEGIN GENERATED COMMAND REFERENCE (scripts/generate_docs.py) -->'
END = '<!-- END GENERATED COMMAND REFERENCE -->'

PARAMETER_TYPES = {
    0: 'Short text', 1: 'Number', 4: 'Encrypted text', 8: 'Boolean', 9: 'Credentials', 12: 'Long text',
    13: 'Incident type', 14: 'Encrypted long text', 15: 'Single select', 16: 'Multi select', 17: 'Expiration',
    19: 'Interval', 21: 'Day',
}


class DocsError(Exception):
    pass


# ------------------------------------------------------------------------------------------ markdown
def cell(text: Any) -> str:
    """Text for a table cell: one line, pipes escaped, angle brackets shown rather than taken as HTML."""
    value = ' '.join(str(text if text is not None else '').split())
    return value.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;').replace('|', '\\|')


def paragraph(text: Any) -> str:
    return str(text or '').strip().replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


def code(text: Any) -> str:
    value = ' '.join(str(text).split()).replace('|', '\\|')
    fence = '``' if '`' in value else '`'
    return f'{fence}{value}{fence}' if value else ''


def table(header: list, rows: list) -> list:
    return ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)] + ['| ' + ' | '.join(row) + ' |' for row in rows]


def yes_no(value: Any) -> str:
    return 'yes' if value is True or str(value).lower() == 'true' else 'no'


# ------------------------------------------------------------------------------------------ sections
def parameter_rows(configuration: list) -> list:
    rows = []
    for param in configuration:
        kind = PARAMETER_TYPES.get(param.get('type'), f"type {param.get('type')}")
        if param.get('type') == 9:
            kind += ' (`password` only)' if param.get('hiddenusername') else ' (`identifier` + `password`)'
        display = param.get('display') or param.get('displaypassword') or ''
        if param.get('type') == 9 and param.get('display') and param.get('displaypassword'):
            display = f"{param['display']} / {param['displaypassword']}"
        notes = []
        if param.get('hidden'):
            notes.append('Hidden in the XSOAR UI (kept for instances configured with it).')
        if param.get('additionalinfo'):
            notes.append(param['additionalinfo'])
        if param.get('options'):
            notes.append('Options: ' + ', '.join(map(str, param['options'])) + '.')
        rows.append([code(param['name']), cell(display), cell(kind), yes_no(param.get('required')),
                     code(param['defaultvalue']) if param.get('defaultvalue') not in (None, '') else '',
                     cell(' '.join(notes))])
    return rows


def placeholder(argument: dict) -> str:
    if argument.get('defaultValue') not in (None, ''):
        return str(argument['defaultValue'])
    if argument.get('predefined'):
        return str(argument['predefined'][0])
    return argument['name'].upper()


def example_line(command: dict) -> str:
    words = [PYTHON, MODULE_FILE, command['name']]
    shown = EXAMPLE_ARGUMENTS.get(command['name'], ())
    words += [f"{arg['name']}={placeholder(arg)}" for arg in command.get('arguments') or []
              if arg.get('required') or arg['name'] in shown]
    return ' '.join(shlex.quote(word) for word in words) + ' --params params.json'


def argument_rows(arguments: list) -> list:
    rows = []
    for argument in arguments:
        text = argument.get('description', '')
        if argument.get('deprecated') and not text.lower().startswith('deprecated'):
            text = f'Deprecated. {text}'
        if argument.get('predefined'):
            text += ' Possible values: ' + ', '.join(map(str, argument['predefined'])) + '.'
        if argument.get('isArray'):
            text += ' Accepts a comma-separated list.'
        default = argument.get('defaultValue')
        rows.append([code(argument['name']), cell(text.strip()), yes_no(argument.get('required')),
                     code(default) if default not in (None, '') else ''])
    return rows


def command_section(command: dict) -> list:
    lines = [f"### {command['name']}", '', paragraph(command.get('description', '')), '']
    if command.get('deprecated'):
        lines += ['**Deprecated.**', '']
    if command.get('execution'):
        lines += ['Potentially harmful: XSOAR asks for confirmation before a playbook runs it.', '']
    lines += ['```bash', example_line(command), '```', '', '#### Input', '']
    arguments = command.get('arguments') or []
    lines += table(['Argument', 'Description', 'Required', 'Default'], argument_rows(arguments)) if arguments \
        else ['There are no input arguments for this command.']
    lines += ['', '#### Context output', '']
    outputs = command.get('outputs') or []
    lines += table(['Path', 'Type', 'Description'],
                   [[code(o['contextPath']), cell(o.get('type', '')), cell(o.get('description', ''))] for o in outputs]) \
        if outputs else ['There is no context output for this command.']
    return lines + ['']


def render(integration: dict) -> str:
    """The Markdown that goes between the markers (without them)."""
    commands = PLATFORM_COMMANDS + integration['script']['commands']
    lines = [
        f'Generated from `{YML_PATH.name}` by `python3 scripts/generate_docs.py`; do not edit this part by hand.',
        'Each command shows how to run it from a shell (see [Running from a shell](#running-from-a-shell)); in',
        'XSOAR, run it as `!command-name argument=value`. Placeholders in capitals stand for your values.',
        '`test-module` and `fetch-incidents` are run by XSOAR itself (the Test button, the fetch interval).',
        '',
        '### Instance parameters',
        '',
        *table(['Parameter', 'Display name', 'Type', 'Required', 'Default', 'Description'],
               parameter_rows(integration['configuration'])),
        '',
        '### Commands',
        '',
        *table(['Command', 'Description'],
               [[f"[{c['name']}](#{c['name']})", cell(c.get('description', ''))] for c in commands]),
        '',
    ]
    for command in commands:
        lines += command_section(command)
    return '\n'.join(lines).rstrip('\n') + '\n'


# ------------------------------------------------------------------------------------------ README
def split_readme(readme: str) -> tuple[str, str, str]:
    """(text up to and including BEGIN line, generated part, text from the END line on)."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise DocsError(f'README.md must contain each marker line exactly once:\n  {BEGIN}\n  {END}')
    head, rest = readme.split(BEGIN, 1)
    body, tail = rest.split(END, 1)
    return head + BEGIN + '\n', body.lstrip('\n'), END + tail


def generated_part(readme: str) -> str:
    return split_readme(readme)[1]


def updated_readme(readme: str, integration: dict) -> str:
    head, _, tail = split_readme(readme)
    return head + render(integration) + tail


def load_integration(path: Path = YML_PATH) -> dict:
    import yaml
    return yaml.safe_load(path.read_text(encoding='utf-8'))


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--check', action='store_true', help='do not write; exit 1 when README.md is out of date')
    options = parser.parse_args(argv)
    readme = README_PATH.read_text(encoding='utf-8')
    expected = updated_readme(readme, load_integration())
    if options.check:
        if expected == readme:
            print('README.md command reference is up to date')
            return 0
        diff = difflib.unified_diff(readme.splitlines(), expected.splitlines(), 'README.md', 'README.md (generated)',
                                    lineterm='', n=1)
        print('\n'.join(list(diff)[:80]))
        print('README.md command reference is out of date: run python scripts/generate_docs.py', file=sys.stderr)
        return 1
    if expected != readme:
        README_PATH.write_text(expected, encoding='utf-8')
        print(f'README.md: command reference written ({len(load_integration()["script"]["commands"])} commands)')
    else:
        print('README.md command reference is up to date')
    return 0


if __name__ == '__main__':
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from project_python import ensure_project_python
    ensure_project_python(__file__, ('yaml',))
    try:
        sys.exit(main())
    except DocsError as error:
        print(f'generate_docs: {error}', file=sys.stderr)
        sys.exit(1)
