"""The yml keeps the existing integration's contract (anchor-xsoar.md §1 and §2).

tests/data/anchor_contract.json lists, for "O365 Outlook Mail (Using Graph API)", every instance parameter and,
per command, its arguments (required / default / predefined / isArray) and context outputs. Playbooks and
scripts written against that integration must keep working when they switch to this one, so nothing in it may
disappear or change meaning; additions are fine.
"""
import json
import os

import pytest
import yaml

import MicrosoftGraphMail as mgm

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

with open(os.path.join(ROOT_DIR, 'MicrosoftGraphMail.yml'), encoding='utf-8') as _handle:
    YML = yaml.safe_load(_handle)
with open(os.path.join(ROOT_DIR, 'tests', 'data', 'anchor_contract.json'), encoding='utf-8') as _handle:
    CONTRACT = json.load(_handle)

YML_COMMANDS = {c['name']: c for c in YML['script']['commands']}
YML_PARAMS = {p['name']: p for p in YML['configuration']}

# Deliberate default changes, and only these. The existing integration's defaults contradicted its own
# documentation and each other (anchor-xsoar.md §1 "Sending", §6 and weakness §9.11): send-mail's importance
# defaulted to Low while its description said Normal, and bodyType was text for create-draft but HTML in
# send-mail's code. Both commands now default to bodyType=HTML and importance=Normal.
# (command, argument) -> (anchor default, new default)
ALLOWED_DEFAULT_CHANGES = {
    ('send-mail', 'bodyType'): (None, 'HTML'),
    ('send-mail', 'importance'): ('Low', 'Normal'),
    ('msgraph-mail-create-draft', 'bodyType'): ('text', 'HTML'),
    ('msgraph-mail-create-draft', 'importance'): ('Low', 'Normal'),
}

# Run by main() itself rather than through the COMMANDS table.
BUILT_IN_COMMANDS = ('test-module', 'fetch-incidents')

ANCHOR_COMMANDS = sorted(CONTRACT['commands'])
ANCHOR_ARGS = [(command, arg) for command in ANCHOR_COMMANDS for arg in CONTRACT['commands'][command]['args']]
ANCHOR_OUTPUTS = [(command, path) for command in ANCHOR_COMMANDS for path in CONTRACT['commands'][command]['outputs']]


def arg_id(pair: tuple) -> str:
    return ':'.join(pair)


def yml_arg(command: str, name: str) -> dict:
    args = {a['name']: a for a in YML_COMMANDS.get(command, {}).get('arguments') or []}
    assert name in args, f'{command} has no argument {name!r} in the yml'
    return args[name]


def normalized_default(value):
    """yml defaults may be parsed by YAML as numbers or booleans; the contract holds them as strings."""
    if value is None or value == '':
        return None
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


# ---------------------------------------------------------------------------------------------- parameters
def test_contract_is_not_empty():
    assert len(CONTRACT['params']) >= 20 and len(CONTRACT['commands']) >= 20


@pytest.mark.parametrize('param', CONTRACT['params'])
def test_anchor_parameter_is_kept(param):
    assert param in YML_PARAMS


def test_parameter_names_are_unique():
    names = [p['name'] for p in YML['configuration']]
    assert len(names) == len(set(names))


# ---------------------------------------------------------------------------------------------- commands
@pytest.mark.parametrize('command', ANCHOR_COMMANDS)
def test_anchor_command_is_kept(command):
    assert command in YML_COMMANDS


def test_command_names_are_unique():
    names = [c['name'] for c in YML['script']['commands']]
    assert len(names) == len(set(names))


@pytest.mark.parametrize('command', sorted(YML_COMMANDS))
def test_argument_names_are_unique(command):
    names = [a['name'] for a in YML_COMMANDS[command].get('arguments') or []]
    assert len(names) == len(set(names))


@pytest.mark.parametrize('command, arg', ANCHOR_ARGS, ids=[arg_id(p) for p in ANCHOR_ARGS])
def test_anchor_argument_is_kept(command, arg):
    yml_arg(command, arg)


@pytest.mark.parametrize('command, arg', ANCHOR_ARGS, ids=[arg_id(p) for p in ANCHOR_ARGS])
def test_argument_default_is_unchanged_unless_allowed(command, arg):
    anchor_default = CONTRACT['commands'][command]['args'][arg]['default']
    new_default = normalized_default(yml_arg(command, arg).get('defaultValue'))
    allowed = ALLOWED_DEFAULT_CHANGES.get((command, arg))
    if allowed:
        assert (anchor_default, new_default) == allowed
    else:
        assert new_default == anchor_default


@pytest.mark.parametrize('key', sorted(ALLOWED_DEFAULT_CHANGES), ids=[arg_id(k) for k in sorted(ALLOWED_DEFAULT_CHANGES)])
def test_allowed_default_change_is_real_and_stays_within_the_choices(key):
    """The allow-list names real anchor arguments and the new default is one of the predefined values."""
    command, arg = key
    anchor = CONTRACT['commands'][command]['args'][arg]
    new = yml_arg(command, arg)
    old_value, new_value = ALLOWED_DEFAULT_CHANGES[key]
    assert anchor['default'] == old_value
    assert normalized_default(new.get('defaultValue')) == new_value
    assert new_value in (new.get('predefined') or [])


@pytest.mark.parametrize('command, arg', ANCHOR_ARGS, ids=[arg_id(p) for p in ANCHOR_ARGS])
def test_optional_argument_is_not_made_required(command, arg):
    if not CONTRACT['commands'][command]['args'][arg]['required']:
        assert not yml_arg(command, arg).get('required'), 'playbooks that omit it would break'


@pytest.mark.parametrize('command, arg', ANCHOR_ARGS, ids=[arg_id(p) for p in ANCHOR_ARGS])
def test_predefined_values_are_still_accepted(command, arg):
    anchor_values = CONTRACT['commands'][command]['args'][arg]['predefined']
    if anchor_values:
        assert set(anchor_values) <= set(yml_arg(command, arg).get('predefined') or [])


@pytest.mark.parametrize('command, arg', ANCHOR_ARGS, ids=[arg_id(p) for p in ANCHOR_ARGS])
def test_array_arguments_stay_arrays(command, arg):
    assert bool(yml_arg(command, arg).get('isArray')) == CONTRACT['commands'][command]['args'][arg]['isArray']


@pytest.mark.parametrize('command', [c for c in ANCHOR_COMMANDS if 'ran_once_flag' in CONTRACT['commands'][c]['args']])
def test_ran_once_flag_is_kept_as_deprecated(command):
    """Playbooks may still pass it; it is accepted and ignored (retries honour Retry-After instead)."""
    assert yml_arg(command, 'ran_once_flag').get('deprecated') is True


@pytest.mark.parametrize('command, path', ANCHOR_OUTPUTS, ids=[arg_id(p) for p in ANCHOR_OUTPUTS])
def test_anchor_output_is_kept(command, path):
    outputs = {o['contextPath'] for o in YML_COMMANDS.get(command, {}).get('outputs') or []}
    assert path in outputs


# ---------------------------------------------------------------------------------------------- dispatch
@pytest.mark.parametrize('command', sorted(YML_COMMANDS))
def test_yml_command_is_dispatched(command):
    """Every command the yml offers must be run by main(). Sending commands are still being written."""
    assert command in mgm.COMMANDS or command in BUILT_IN_COMMANDS, f'{command} is in the yml but not in COMMANDS'


@pytest.mark.parametrize('command', sorted(mgm.COMMANDS))
def test_dispatched_command_is_declared(command):
    assert command in YML_COMMANDS


def test_fetch_incidents_is_implemented():
    assert YML['script'].get('isfetch') is True
    assert callable(getattr(mgm, 'fetch_incidents', None)), 'isfetch is true but fetch_incidents is not defined'



# ---------------------------------------------------------------------------------------------- pack 1.8
# tests/data/anchor_contract_1_8.json: the four commands the existing integration added in pack 1.8
# (anchor-xsoar-1.8.md). Playbooks written since then call them with these arguments and read these paths.
with open(os.path.join(ROOT_DIR, 'tests', 'data', 'anchor_contract_1_8.json'), encoding='utf-8') as _handle:
    CONTRACT_1_8 = json.load(_handle)['commands']

ARGS_1_8 = [(command, arg) for command in sorted(CONTRACT_1_8) for arg in CONTRACT_1_8[command]['args']]
OUTPUTS_1_8 = [(command, path) for command in sorted(CONTRACT_1_8) for path in CONTRACT_1_8[command]['outputs']]


def test_contract_1_8_names_the_four_commands():
    assert sorted(CONTRACT_1_8) == ['msgraph-mail-create-rule', 'msgraph-mail-get-mailtips',
                                    'msgraph-mail-get-settings', 'msgraph-mail-update-rule']


@pytest.mark.parametrize('command', sorted(CONTRACT_1_8))
def test_1_8_command_is_offered_and_dispatched(command):
    assert command in YML_COMMANDS and command in mgm.COMMANDS


@pytest.mark.parametrize('command, arg', ARGS_1_8, ids=[arg_id(p) for p in ARGS_1_8])
def test_1_8_argument_keeps_its_contract(command, arg):
    expected = CONTRACT_1_8[command]['args'][arg]
    actual = yml_arg(command, arg)
    assert normalized_default(actual.get('defaultValue')) == expected['default']
    assert bool(actual.get('isArray')) == expected['isArray']
    if not expected['required']:
        assert not actual.get('required'), 'playbooks that omit it would break'
    if expected['predefined']:
        assert set(expected['predefined']) <= set(actual.get('predefined') or [])


@pytest.mark.parametrize('command, path', OUTPUTS_1_8, ids=[arg_id(p) for p in OUTPUTS_1_8])
def test_1_8_output_is_kept(command, path):
    outputs = {o['contextPath'] for o in YML_COMMANDS[command].get('outputs') or []}
    assert path in outputs
