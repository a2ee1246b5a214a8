"""The demo: a local Microsoft Graph sandbox, an instance configured for it, and the integration's commands.

Run through `bash scripts/demo.sh`. Everything it writes goes to `.demo/` (params, state, files).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / '.demo'
sys.path.insert(0, str(ROOT))

from tests.e2e_support import instance_params  # noqa: E402

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


def start_sandbox() -> tuple[subprocess.Popen, dict]:
    state_dir = DEMO_DIR / 'sandbox'
    process = subprocess.Popen([sys.executable, '-m', 'sandbox', '--port', '0', '--state-dir', str(state_dir)],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    ready = process.stdout.readline().strip() if process.stdout else ''
    if not ready.startswith('READY '):
        process.kill()
        raise SystemExit(f'The sandbox did not start: {ready!r}')
    return process, json.loads((state_dir / 'sandbox.json').read_text())


class Runner:
    """Runs the integration's CLI exactly as a user would type it, and shows the command and its output."""

    def __init__(self, info: dict):
        self.env = {**os.environ, 'REQUESTS_CA_BUNDLE': info['ca_path']}
        self.env.pop('CURL_CA_BUNDLE', None)

    def run(self, command: str, **args: Any) -> dict:
        """Runs one command once. Its output is shown as the terminal renders it; `--json` output is parsed so
        later steps can use ids from it."""
        words = [command, *[f'{k}={v}' for k, v in args.items()], '--params', 'params.json']
        print(f'\n$ python MicrosoftGraphMail.py {" ".join(words)}', flush=True)
        wants_data = command in ('msgraph-mail-list-emails', 'msgraph-mail-search-email')
        completed = subprocess.run([sys.executable, str(ROOT / 'MicrosoftGraphMail.py'), *words,
                                    *(['--json'] if wants_data else [])],
                                   cwd=DEMO_DIR, env=self.env, capture_output=True, text=True)
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


def main() -> None:
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir()
    banner('Starting the local Microsoft Graph sandbox')
    sandbox, info = start_sandbox()
    try:
        print(f"Sandbox at {info['base_url']} (mailboxes: {', '.join(info['mailboxes'])})")
        params = instance_params(info, 'client_secret', mailbox_to_fetch='soc@contoso.com',
                                 folder_to_fetch='Inbox/Phishing', first_fetch='30 days', isFetch=True)
        (DEMO_DIR / 'params.json').write_text(json.dumps(params, indent=2))
        print(f'Instance configuration written to {DEMO_DIR / "params.json"} (self-deployed app, client secret)')
        cli = Runner(info)

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

        banner('Bad input is reported, not a traceback')
        cli.run('msgraph-mail-list-emails', user_id='alice@contoso.com', page_size='5000')

        banner('Pointing the same runner at a real tenant')
        print('Write a params file like this one (the secret comes from the environment, not the file):')
        print(json.dumps(REAL_TENANT_PARAMS, indent=2))
        print('then:  MSGRAPH_CLIENT_SECRET=... python MicrosoftGraphMail.py test-module --params params.json')
        print('See README.md, "Setting up for a real tenant", for the app registration and permissions.')
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


if __name__ == '__main__':
    main()
