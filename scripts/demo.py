"""The demo: a local Microsoft Graph sandbox, an instance configured for it, and the integration's commands.

Run through `bash scripts/demo.sh [--dir DIR] [--keep-sandbox]`. Everything it writes goes to `.demo/` (the
sandbox's files and its params file, the state, saved files). Every command is printed as it can be pasted into a
shell in the repository folder; with --keep-sandbox the sandbox keeps running after the demo (until Enter or
Ctrl-C), so they can be.
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KEEP_RUNNING_MARKER = 'The sandbox is still running'

REAL_TENANT_PARAMS = {
    'url': 'https://graph.microsoft.com',
    'self_deployed': True,
    'creds_auth_id': {'password': '<application (client) ID>'},
    'creds_tenant_id': {'password': '<directory (tenant) ID>'},
    'credentials': {'password': '$ENV:MSGRAPH_CLIENT_SECRET'},
    'mailbox_to_fetch': 'phishing-reports@yourdomain.com',
    'folder_to_fetch': 'Inbox',
    'first_fetch': '1 day',
}


def banner(text: str) -> None:
    print(f'\n\033[1m== {text}\033[0m', flush=True)


def start_sandbox(demo_dir: Path) -> tuple[subprocess.Popen, dict]:
    state_dir = demo_dir / 'sandbox'
    process = subprocess.Popen([sys.executable, '-m', 'sandbox', '--port', '0', '--state-dir', str(state_dir)],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    ready = process.stdout.readline().strip() if process.stdout else ''
    if not ready.startswith('READY '):
        process.kill()
        raise SystemExit(f'The sandbox did not start: {ready!r}')
    return process, json.loads((state_dir / 'sandbox.json').read_text())


def typed_path(path: Path) -> str:
    """A path as typed in the repository folder: relative inside it, absolute elsewhere."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def shell_line(command: str, args: dict, options: list) -> str:
    """The command as typed: each value quoted for the shell (`subject='Security notice'`)."""
    words = ['python3', 'MicrosoftGraphMail.py', command, *[f'{k}={shlex.quote(str(v))}' for k, v in args.items()]]
    return ' '.join(words + [shlex.quote(option) for option in options])


class Runner:
    """Runs the integration's CLI as a user types it in the repository folder, and shows the command (quoted so it
    can be pasted) and its output. The params file the sandbox wrote names its certificate authority, so no
    REQUESTS_CA_BUNDLE is needed."""

    def __init__(self, demo_dir: Path, params_path: Path):
        self.options = ['--params', typed_path(params_path), '--state', typed_path(demo_dir / 'state.json'),
                        '--out', typed_path(demo_dir / 'out')]
        self.env = {k: v for k, v in os.environ.items() if k not in ('REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE')}

    def run(self, command: str, **args: Any) -> dict:
        """Runs one command once. Its output is shown as the terminal renders it; `--json` output is parsed so
        later steps can use ids from it."""
        words = ['MicrosoftGraphMail.py', command, *[f'{k}={v}' for k, v in args.items()], *self.options]
        print(f'\n$ {shell_line(command, args, self.options)}', flush=True)
        wants_data = command in ('msgraph-mail-list-emails', 'msgraph-mail-search-email')
        completed = subprocess.run([sys.executable, *words, *(['--json'] if wants_data else [])],
                                   cwd=ROOT, env=self.env, capture_output=True, text=True)
        if not wants_data:
            print((completed.stdout + completed.stderr).rstrip()[:3000], flush=True)
            return {}
        document = json.loads(completed.stdout)
        shown = [e.get('HumanReadable') or f"Error: {e.get('Contents')}" for e in document['entries']]
        print('\n'.join(shown).rstrip()[:3000], flush=True)
        return document if completed.returncode == 0 else {}


def first_message_id(listing: dict) -> str:
    entries = listing.get('entries') or [{}]
    messages = entries[0].get('Contents') or []
    return messages[0]['id'] if messages else ''


def parse_args(argv: list) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='The integration against a local Microsoft Graph sandbox.')
    parser.add_argument('--dir', default=str(ROOT / '.demo'), help='where the demo writes its files (default .demo)')
    parser.add_argument('--keep-sandbox', action='store_true',
                        help='keep the sandbox running after the demo, until Enter or Ctrl-C, to paste the commands')
    return parser.parse_args(argv)


def main(argv: list) -> None:
    options = parse_args(argv)
    demo_dir = Path(options.dir).resolve()
    shutil.rmtree(demo_dir, ignore_errors=True)
    demo_dir.mkdir(parents=True)
    banner('Starting the local Microsoft Graph sandbox')
    sandbox, info = start_sandbox(demo_dir)
    try:
        print(f"Sandbox at {info['base_url']} (mailboxes: {', '.join(info['mailboxes'])})")
        params_path = demo_dir / 'sandbox' / 'params.json'
        print(f'Instance configuration written by the sandbox: {typed_path(params_path)} (self-deployed app, client '
              'secret, fetching soc@contoso.com Inbox/Phishing)')
        cli = Runner(demo_dir, params_path)

        banner('test-module: credentials, mailbox and fetch folder')
        cli.run('test-module')
        banner('fetch-incidents: every mail in soc@contoso.com Inbox/Phishing becomes one incident')
        cli.run('fetch-incidents')
        banner('fetch-incidents again: nothing new, nothing duplicated')
        cli.run('fetch-incidents')

        banner('Reading mail')
        listing = cli.run('msgraph-mail-list-emails', user_id='alice@contoso.com', page_size='4')
        cli.run('msgraph-mail-list-folders', user_id='soc@contoso.com')
        phish = cli.run('msgraph-mail-search-email', user_id='alice@contoso.com', search='invoice')
        phish_id = first_message_id(phish) or first_message_id(listing)
        if phish_id:
            cli.run('msgraph-mail-list-attachments', user_id='alice@contoso.com', message_id=phish_id)
            cli.run('msgraph-mail-get-attachment', user_id='alice@contoso.com', message_id=phish_id)
        cli.run('msgraph-mail-list-rules', user_id='alice@contoso.com')

        banner('Responding: mark read, move to Junk Email, reply')
        if phish_id:
            cli.run('msgraph-mail-update-email-status', user_id='alice@contoso.com', message_ids=phish_id, status='Read')
            cli.run('msgraph-mail-move-email', user_id='alice@contoso.com', message_id=phish_id,
                    destination_folder_id='Junk Email')
        cli.run('send-mail', to='alice@contoso.com', subject='Security notice',
                body='The invoice mail you received is phishing and was moved to Junk Email.',
                **{'from': 'soc@contoso.com'})
        cli.run('msgraph-mail-list-emails', user_id='alice@contoso.com', page_size='2')

        banner('Tenant-wide: every copy of the campaign in every mailbox, and inbox rules that hide or leak mail')
        cli.run('msgraph-mail-search-mailboxes', all_mailboxes='true', sender='ar@contoso-billing.co')
        cli.run('msgraph-mail-hunt-rules', all_mailboxes='true')

        banner('Bad input is reported, not a traceback')
        cli.run('msgraph-mail-list-emails', user_id='alice@contoso.com', page_size='5000')

        banner('Pointing the same runner at a real tenant')
        print('Write a params file like this one (the secret comes from the environment, not the file):')
        print(json.dumps(REAL_TENANT_PARAMS, indent=2))
        print('then:  MSGRAPH_CLIENT_SECRET=... python3 MicrosoftGraphMail.py test-module --params my-tenant.json')
        print('See README.md, "Setting up for a real tenant", for the app registration and permissions.')
        if options.keep_sandbox:
            print(f'\n{KEEP_RUNNING_MARKER} at {info["base_url"]}: paste any command above in {ROOT}. '
                  'Press Enter (or Ctrl-C) to stop it.', flush=True)
            try:
                sys.stdin.readline()
            except KeyboardInterrupt:
                pass
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


if __name__ == '__main__':
    main(sys.argv[1:])
