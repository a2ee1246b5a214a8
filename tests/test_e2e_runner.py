"""The shell runner as a newcomer uses it (issue 11): which Python, the sandbox's ready params file, the state
file (ignored by git, 0600, locked, written back only with what a run changed, errors that say so), help and
argument checks from the yml, progress on stderr, error texts, the demo's commands and the README's shell section.

Everything runs the CLI in a subprocess against the local sandbox, as a user would.
"""
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e_support import MODULE, REPO, Instance

SOC, ALICE = 'soc@contoso.com', 'alice@contoso.com'
BASE_PYTHON = getattr(sys, '_base_executable', '') or shutil.which('python3') or sys.executable


def clean_env(**extra: str) -> dict:
    """The user's shell: no CA variable, no re-exec marker, no debug log."""
    env = {k: v for k, v in os.environ.items()
           if k not in ('REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'MGM_PROJECT_PYTHON_REEXEC', 'MGM_LOG_LEVEL')}
    env.update(extra)
    return env


def cli(*argv: str, cwd: Path = REPO, python: tuple = (sys.executable,), timeout: float = 120,
        env: dict = None, **popen: object) -> subprocess.CompletedProcess:
    return subprocess.run([*python, str(MODULE), *argv], cwd=cwd, env=env or clean_env(), capture_output=True,
                          text=True, timeout=timeout, **popen)


def start_shell_sandbox(state_dir: Path, python: tuple = (sys.executable,)) -> subprocess.Popen:
    """`python3 -m sandbox` in the repository folder, once it printed READY."""
    process = subprocess.Popen([*python, '-m', 'sandbox', '--state-dir', str(state_dir)], cwd=REPO, env=clean_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = process.stdout.readline()
    if not ready.startswith('READY '):
        process.kill()
        pytest.fail(f'sandbox did not start: {ready!r} {process.communicate()[1]}')
    return process


def stop(process: subprocess.Popen) -> str:
    """Stops the sandbox; returns what it wrote on stderr."""
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=10)[1]


def error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert 'Traceback' not in done.stderr and 'Exception ignored' not in done.stderr, done.stderr
    return done.stderr.strip()


# ------------------------------------------------------------------------ 1, 2: which Python, ready params file
@pytest.fixture(scope='module')
def shell_sandbox(tmp_path_factory):
    """Started by a Python without site-packages (`-S`): it must re-run itself with the project's .venv."""
    state_dir = tmp_path_factory.mktemp('shell-sandbox')
    process = start_shell_sandbox(state_dir, python=(BASE_PYTHON, '-S'))
    yield state_dir
    stop(process)


def test_the_sandbox_started_by_a_bare_python_writes_a_ready_params_file(tmp_path):
    state_dir = tmp_path / 'sb'
    printed = stop(start_shell_sandbox(state_dir, python=(BASE_PYTHON, '-S')))
    params = json.loads((state_dir / 'params.json').read_text())
    info = json.loads((state_dir / 'sandbox.json').read_text())
    assert params['url'] == params['azure_ad_endpoint'] == info['base_url']
    assert params['credentials'] == {'password': info['client_secret']} and params['self_deployed'] is True
    assert os.path.isabs(params['_ca_bundle']) and Path(params['_ca_bundle']).samefile(info['ca_path'])
    assert f'REQUESTS_CA_BUNDLE={os.path.abspath(info["ca_path"])}' in printed
    assert 'params.json' in printed


def test_the_module_run_by_a_bare_python_uses_the_project_venv_and_the_params_file(shell_sandbox, tmp_path):
    state_dir = shell_sandbox
    done = cli('test-module', '--params', str(state_dir / 'params.json'), '--state', str(tmp_path / 's.json'),
               python=(BASE_PYTHON, '-S'), cwd=tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, 'ok'), done.stderr
    listed = cli('msgraph-mail-list-folders', f'user_id={SOC}', '--params', str(state_dir / 'params.json'),
                 '--state', str(tmp_path / 's.json'), python=(BASE_PYTHON, '-S'), cwd=tmp_path)
    assert listed.returncode == 0 and 'Phishing' not in listed.stderr and 'Inbox' in listed.stdout


def test_a_missing_ca_file_named_by_the_params_file_is_a_clear_error(tmp_path):
    (tmp_path / 'p.json').write_text(json.dumps({'url': 'https://graph.microsoft.com', '_ca_bundle': 'gone/ca.pem'}))
    message = error_line(cli('test-module', '--params', 'p.json', cwd=tmp_path))
    assert '_ca_bundle' in message and 'gone/ca.pem' in message and 'no such file' in message


# ------------------------------------------------------------------------ 3: the state file
def test_the_default_state_file_is_private_and_ignored_by_git(instance, tmp_path):
    done = cli('msgraph-mail-list-folders', f'user_id={SOC}', '--params', str(instance.params_path), cwd=tmp_path,
               env=instance.environment())
    assert done.returncode == 0, done.stderr
    state = tmp_path / '.mgm-state.json'
    assert state.stat().st_mode & 0o777 == 0o600
    assert json.loads(state.read_text())['integration_context']['auth']
    for name in ('.mgm-state.json', '.mgm-state.json.lock', 'sub/.mgm-state.json', '.state-x1y2.tmp'):
        assert subprocess.run(['git', 'check-ignore', '-q', name], cwd=REPO).returncode == 0, name


@pytest.mark.parametrize('content, kind', [('null', 'null'), ('[1, 2]', 'a list'), ('"x"', 'a string'),
                                           ('{"last_run": []}', 'a list'), ('{nope', 'not valid JSON')])
def test_a_state_file_that_is_not_a_state_is_a_one_line_error(instance, content, kind):
    instance.state_path.write_text(content)
    message = error_line(instance.run('msgraph-mail-list-folders', user_id=SOC))
    assert len(message.splitlines()) == 1 and '--state' in message and kind in message
    assert instance.state_path.read_text() == content


# ------------------------------------------------------------------------ 4: one run at a time
def incident_ids(result) -> list:
    return [json.loads(incident['rawJSON'])['ID'] for incident in result.incidents]


def run_together(instance: Instance, commands: list) -> list:
    """Starts every command at once (output to files, so none blocks on a full pipe while holding the lock)."""
    runs = []
    for number, (command, args) in enumerate(commands):
        out = open(instance.workdir / f'run-{number}.out', 'w+')
        runs.append((subprocess.Popen(instance.command_line(command, args, True), cwd=instance.workdir,
                                      env=instance.environment(), stdout=out, stderr=subprocess.PIPE, text=True), out))
    outputs = []
    for process, out in runs:
        _, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr
        out.seek(0)
        outputs.append(out.read())
        out.close()
    return outputs


def test_two_fetches_started_together_deliver_every_mail_exactly_once(fresh_sandbox, tmp_path):
    planted = fresh_sandbox.add_messages_bulk(SOC, 'Inbox/Phishing', count=60, subject_prefix='Parallel')
    instance = Instance(fresh_sandbox, tmp_path / 'i', mailbox_to_fetch=SOC, folder_to_fetch='Inbox/Phishing',
                        first_fetch='30 days', fetch_limit='200', isFetch=True)
    fresh_sandbox.set_latency(20)
    outputs = run_together(instance, [('fetch-incidents', {})] * 2)
    delivered = [json.loads(i['rawJSON'])['ID'] for out in outputs for i in json.loads(out)['incidents'] or []]
    again = instance.run('fetch-incidents')
    delivered += incident_ids(again)
    parallel = [i for i in delivered if i in set(planted['immutable_ids'])]
    assert sorted(parallel) == sorted(planted['immutable_ids'])
    assert len(delivered) == len(set(delivered))


def test_parallel_get_attachment_runs_keep_every_file_id(instance, fresh_sandbox):
    mails = [fresh_sandbox.add_message(ALICE, 'Inbox', subject=f'three files {n}', body='x',
                                       attachments=[{'name': f'f{n}-{k}.txt', 'content': f'{n}-{k}'} for k in range(3)])
             for n in range(6)]
    run_together(instance, [('msgraph-mail-get-attachment', {'user_id': ALICE, 'message_id': m['immutableId']})
                            for m in mails])
    files = instance.state()['files']
    assert len(files) == 18
    assert sorted(f['name'] for f in files.values()) == sorted(f'f{n}-{k}.txt' for n in range(6) for k in range(3))


def test_a_slow_command_across_a_fetch_does_not_bring_back_the_old_last_run(fresh_sandbox, tmp_path):
    instance = Instance(fresh_sandbox, tmp_path / 'i', mailbox_to_fetch=SOC, folder_to_fetch='Inbox/Phishing',
                        first_fetch='30 days', isFetch=True)
    assert instance.run('fetch-incidents').returncode == 0
    fresh_sandbox.add_messages_bulk(SOC, 'Inbox/Phishing', count=5, subject_prefix='Late')
    mail = fresh_sandbox.add_message(ALICE, 'Inbox', subject='slow', body='x',
                                     attachments=[{'name': f'a{k}.txt', 'content': 'x'} for k in range(12)])
    fresh_sandbox.set_latency(300)  # the download runs ~4 s, well past the fetch that starts during it
    slow = instance.start('msgraph-mail-get-attachment', user_id=ALICE, message_id=mail['immutableId'])
    time.sleep(0.5)
    fetch = instance.start('fetch-incidents')
    slow_output = slow.communicate(timeout=240)
    fetched = json.loads(fetch.communicate(timeout=240)[0])
    assert slow.returncode == 0, slow_output
    fresh_sandbox.set_latency(0)
    assert len(fetched['incidents']) == 5
    assert instance.run('fetch-incidents').incidents == []


def test_a_command_that_does_not_fetch_leaves_the_last_run_alone(instance):
    instance.state_path.write_text(json.dumps({'last_run': {'marker': 'kept'}, 'files': {}}))
    assert instance.run('msgraph-mail-list-folders', user_id=SOC).returncode == 0
    assert instance.state()['last_run'] == {'marker': 'kept'}


# ------------------------------------------------------------------------ 5: failed fetches, unsaved state
@pytest.fixture
def fetcher(fresh_sandbox, tmp_path):
    return Instance(fresh_sandbox, tmp_path / 'fetch', mailbox_to_fetch=SOC, folder_to_fetch='Inbox/Phishing',
                    first_fetch='30 days', isFetch=True)


def test_a_failed_fetch_keeps_the_last_run_and_exits_1(fetcher, fresh_sandbox):
    assert fetcher.run('fetch-incidents').returncode == 0
    before = fetcher.state()['last_run']
    fresh_sandbox.add_messages_bulk(SOC, 'Inbox/Phishing', count=3, subject_prefix='Blocked')
    fresh_sandbox.add_fault(r'/v1\.0/users/.*', status=403)
    failed = fetcher.run('fetch-incidents', as_json=False)
    assert failed.returncode == 1 and failed.stderr.startswith('Error: ') and 'Traceback' not in failed.stderr
    assert fetcher.state()['last_run'] == before
    fresh_sandbox.clear_faults()
    assert len(fetcher.run('fetch-incidents').incidents) == 3


def limited_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_fetch_whose_state_cannot_be_saved_is_an_error_and_delivers_nothing(fetcher, fresh_sandbox):
    """A full disk (simulated by a file size limit): no 'Exception ignored in atexit', no exit 0, no mail lost."""
    assert fetcher.run('fetch-incidents').returncode == 0
    before = fetcher.state_path.read_text()
    fresh_sandbox.add_messages_bulk(SOC, 'Inbox/Phishing', count=2, subject_prefix='Unsaved')
    done = subprocess.run(fetcher.command_line('fetch-incidents', {}, False), cwd=fetcher.workdir,
                          env=fetcher.environment(), capture_output=True, text=True, timeout=120,
                          preexec_fn=limited_file_size(64))
    message = error_line(done)
    assert 'cannot be saved' in message and 'state.json' in message
    assert 'incident(s)' not in done.stdout
    assert fetcher.state_path.read_text() == before
    assert len(fetcher.run('fetch-incidents').incidents) == 2


# ------------------------------------------------------------------------ 6, 7: help, argument checks
@pytest.mark.parametrize('argv', [['--help'], ['-h'], []])
def test_help_lists_every_command_of_the_yml_one_line_each(argv, tmp_path):
    import yaml
    done = cli(*argv, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    names = ['test-module', 'fetch-incidents'] + [c['name'] for c in yaml.safe_load(
        (REPO / 'MicrosoftGraphMail.yml').read_text())['script']['commands']]
    for name in names:
        assert len([line for line in done.stdout.splitlines() if line.split()[:1] == [name]]) == 1, name
    assert not (tmp_path / 'out').exists() and not (tmp_path / '.mgm-state.json').exists()


def test_command_help_shows_arguments_defaults_and_choices():
    listing = cli('msgraph-mail-list-emails', '--help')
    assert listing.returncode == 0
    assert re.search(r'^  user_id \(required\)$', listing.stdout, re.MULTILINE)
    assert 'Default: 20.' in listing.stdout and 'next_page' in listing.stdout
    status = cli('msgraph-mail-update-email-status', '-h')
    assert 'Choices: Read, Unread.' in status.stdout
    assert 'no arguments' in cli('test-module', '--help').stdout


@pytest.mark.parametrize('command, typo, meant', [('msgraph-mail-list-emails', 'userid', 'user_id'),
                                                  ('msgraph-mail-delete-email', 'userid', 'user_id'),
                                                  ('send-mail', 'subjet', 'subject')])
def test_an_undeclared_argument_is_refused_with_the_nearest_name(instance, fresh_sandbox, command, typo, meant):
    fresh_sandbox.reset_stats()
    message = error_line(instance.run(command, as_json=False, **{typo: ALICE, 'message_id': 'x'}))
    assert f"no argument '{typo}'" in message and f'Did you mean {meant}?' in message
    assert sum(endpoint.get('requests', 0) for endpoint in fresh_sandbox.stats().get('endpoints', {}).values()) == 0
    assert not instance.state_path.exists()


def test_an_unknown_command_suggests_the_nearest_one(instance):
    message = error_line(instance.run('msgraph-mail-list-email', as_json=False))
    assert 'Did you mean msgraph-mail-list-emails?' in message and 'NotImplementedError' not in message


# ------------------------------------------------------------------------ 8: progress on stderr
def test_retries_on_throttling_are_reported_on_stderr(instance, fresh_sandbox):
    fresh_sandbox.add_fault(r'/v1\.0/users/alice@contoso\.com/messages', status=429, retry_after=1, count=2)
    done = instance.run('msgraph-mail-list-emails', user_id=ALICE)
    assert done.returncode == 0
    assert 'throttled by Graph (HTTP 429), retrying in 1 s, attempt 2 of 8' in done.stderr
    assert 'throttled by Graph (HTTP 429), retrying in 1 s, attempt 3 of 8' in done.stderr
    assert json.loads(done.stdout)['entries'][0]['Type'] == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def test_a_stopped_sandbox_with_a_cached_token_fails_after_one_reported_retry(tmp_path):
    process = start_shell_sandbox(tmp_path / 'sb')
    params = str(tmp_path / 'sb' / 'params.json')
    state = str(tmp_path / 's.json')
    try:
        assert cli('msgraph-mail-list-folders', f'user_id={SOC}', '--params', params, '--state', state,
                   cwd=tmp_path).returncode == 0
    finally:
        stop(process)
    done = cli('msgraph-mail-list-emails', f'user_id={ALICE}', '--params', params, '--state', state, cwd=tmp_path)
    message = error_line(done)
    retries = [line for line in message.splitlines() if 'retrying in' in line]
    assert len(retries) == 1 and re.match(r'could not connect to 127\.0\.0\.1:\d+, retrying in [\d.]+ s, attempt 2 of 8',
                                          retries[0]), message
    assert 'connect' in message.splitlines()[-1].lower()


def test_a_large_download_reports_its_progress(instance, fresh_sandbox):
    mail = fresh_sandbox.add_message(ALICE, 'Inbox', subject='big', body='x',
                                     attachments=[{'name': 'big.bin', 'size': 25 * 1024 * 1024}])
    done = instance.run('msgraph-mail-get-attachment', user_id=ALICE, message_id=mail['immutableId'])
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith('downloading')]
    assert progress == ['downloading: 10 MiB of 25 MiB', 'downloading: 20 MiB of 25 MiB']


# ------------------------------------------------------------------------ 9: error texts
def test_an_unset_env_variable_is_named(instance):
    instance.write_params(credentials={'password': '$ENV:MGM_TEST_UNSET_SECRET'})
    env = {k: v for k, v in instance.environment().items() if k != 'MGM_TEST_UNSET_SECRET'}
    done = subprocess.run(instance.command_line('test-module', {}, False), cwd=instance.workdir, env=env,
                          capture_output=True, text=True, timeout=60)
    message = error_line(done)
    assert 'MGM_TEST_UNSET_SECRET is not set' in message and '"credentials.password"' in message


def test_a_missing_attachment_file_says_no_such_file(instance):
    message = error_line(instance.run('send-mail', as_json=False, to=ALICE, subject='s', body='b',
                                      attachIDs='no-such-report.pdf', **{'from': SOC}))
    assert "Argument 'attachIDs': no such file: 'no-such-report.pdf'" in message


def test_a_wrong_tenant_is_explained_in_whole_sentences(instance):
    """msal's (pinned) explanation has three sentences; the last one used to be cut ("Also plea. Check ...")."""
    instance.write_params(creds_tenant_id={'password': 'wrong-tenant.onmicrosoft.com'})
    message = error_line(instance.run('test-module', as_json=False))
    assert 'wrong-tenant.onmicrosoft.com' in message
    assert 'Also please double check your tenant name or GUID is correct. Check the Tenant ID' in message
    assert '  ' not in message


# ------------------------------------------------------------------------ 11: readable output
def test_list_emails_shows_the_next_page_to_paste(instance):
    first = instance.run('msgraph-mail-list-emails', as_json=False, user_id=ALICE, page_size='2')
    assert first.returncode == 0
    link = re.search(r'`next_page="([^"]+)"`', first.stdout).group(1)
    second = instance.run('msgraph-mail-list-emails', user_id=ALICE, next_page=link)
    assert second.returncode == 0 and second.entries[0]['Contents']


def test_get_email_with_get_body_shows_the_body(instance, fresh_sandbox):
    mail = fresh_sandbox.add_message(ALICE, 'Inbox', subject='with body', body='<p>Please wire <b>5,000 EUR</b></p>')
    done = instance.run('msgraph-mail-get-email', as_json=False, user_id=ALICE, message_id=mail['immutableId'],
                        get_body='true')
    assert done.returncode == 0 and 'Please wire 5,000 EUR' in done.stdout.split('#### Body', 1)[1]


def test_send_mail_shows_the_attachments_it_carried(instance):
    report = instance.workdir / 'report.txt'
    report.write_text('indicators')
    done = instance.run('send-mail', as_json=False, to=ALICE, subject='IOC', body='see file',
                        attachIDs=str(report), attachNames='iocs.txt', **{'from': SOC})
    assert done.returncode == 0, done.stderr
    assert 'Attachments: iocs.txt (10 bytes)' in done.stdout


def test_a_fetch_says_how_many_mails_still_wait(fresh_sandbox, tmp_path):
    instance = Instance(fresh_sandbox, tmp_path / 'i', mailbox_to_fetch=SOC, folder_to_fetch='Inbox/Phishing',
                        first_fetch='30 days', fetch_limit='2', isFetch=True)
    fresh_sandbox.add_messages_bulk(SOC, 'Inbox/Phishing', count=5, subject_prefix='Queued')
    done = instance.run('fetch-incidents', as_json=False)
    pending = len(instance.state()['last_run']['pending'])
    assert done.returncode == 0 and pending > 0
    assert f'{pending} more mail(s) wait in the queue' in done.stdout


# ------------------------------------------------------------------------ 12: documented commands work
def test_move_email_keeps_the_id_as_documented(instance, fresh_sandbox):
    mail = fresh_sandbox.add_message(ALICE, 'Inbox', subject='move me', body='x')
    done = instance.run('msgraph-mail-move-email', user_id=ALICE, message_id=mail['immutableId'],
                        destination_folder_id='Junk Email')
    assert done.returncode == 0
    moved = next(v for k, v in done.entries[0]['EntryContext'].items() if k.startswith('MSGraphMail.MovedEmails'))
    assert moved['ID'] == mail['immutableId']
    described = cli('msgraph-mail-move-email', '--help').stdout
    assert 'keeps its ID' in described and 'new ID' not in described


def test_the_readme_send_mail_example_works_with_its_placeholders_filled(instance):
    section = (REPO / 'README.md').read_text().split('### send-mail\n', 1)[1]
    example = re.search(r'```bash\n(.+)\n```', section).group(1)
    filled = example.replace('FROM', SOC).replace('=TO', f'={ALICE}').replace('SUBJECT', 'hello')
    words = filled.split()[2:-2]
    done = instance.run(words[0], **dict(word.split('=', 1) for word in words[1:]))
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------ 10: the demo's commands paste as printed
def test_the_commands_the_demo_prints_run_when_pasted(tmp_path):
    demo = subprocess.Popen([sys.executable, str(REPO / 'scripts' / 'demo.py'), '--dir', str(tmp_path / 'demo'),
                             '--keep-sandbox'], cwd=REPO, env=clean_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    printed = []
    try:
        for line in demo.stdout:
            if line.startswith('$ '):
                printed.append(line[2:].strip())
            if line.startswith('The sandbox is still running'):
                break
        assert len(printed) >= 12
        results = [subprocess.run(['bash', '-c', line], cwd=REPO, env=clean_env(), capture_output=True, text=True,
                                  timeout=120) for line in printed]
    finally:
        demo.stdin.write('\n')
        demo.stdin.close()
        demo.wait(timeout=30)
    failed = [(line, r.stderr) for line, r in zip(printed, results) if r.returncode != 0]
    assert [line for line, _ in failed] == [line for line in printed if 'page_size=5000' in line], failed
    assert "'page_size'" in failed[0][1]
    assert any("subject='Security notice'" in line for line in printed)


# ------------------------------------------------------------------------ finding 1 + done-when: README from a clone
def readme_shell_blocks() -> tuple[str, list]:
    readme = (REPO / 'README.md').read_text()
    section = readme.split('## Running from a shell\n', 1)[1].split('\n## ', 1)[0]
    blocks = re.findall(r'```bash\n(.*?)```', section, flags=re.DOTALL)
    return blocks[0].strip(), [line for line in blocks[1].splitlines() if line.strip()]


def test_the_readme_shell_section_works_command_by_command_in_a_fresh_clone(tmp_path):
    clone = tmp_path / 'clone'
    tracked = subprocess.run(['git', 'ls-files', '-z'], cwd=REPO, capture_output=True, check=True).stdout.split(b'\0')
    for name in filter(None, (t.decode() for t in tracked)):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    os.symlink(os.path.realpath(REPO / '.venv'), clone / '.venv')  # the venv bootstrap.sh would create (no network)
    start, commands = readme_shell_blocks()
    assert start == 'python3 -m sandbox'
    server = subprocess.Popen(['bash', '-c', f'exec {start}'], cwd=clone, env=clean_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith('READY ')
        for line in commands:
            done = subprocess.run(['bash', '-c', line], cwd=clone, env=clean_env(), capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, (line, done.stdout, done.stderr)
            assert 'Traceback' not in done.stderr
    finally:
        stop(server)
    assert (clone / '.sandbox' / 'params.json').is_file() and (clone / '.mgm-state.json').is_file()
