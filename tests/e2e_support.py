"""Drives the integration the way a user does: as a command-line program against the local sandbox."""
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parent.parent
MODULE = REPO / 'MicrosoftGraphMail.py'
AUTH_MODES = ('client_secret', 'certificate', 'oproxy', 'managed_identity')


def instance_params(info: dict, mode: str = 'client_secret', **extra: Any) -> dict:
    """Instance parameters (yml names) that point the integration at the sandbox with one auth mode."""
    params: dict[str, Any] = {'url': info['base_url'], 'azure_ad_endpoint': info['base_url'], 'timeout': '30'}
    if mode == 'client_secret':
        params.update(self_deployed=True, creds_auth_id={'password': info['client_id']},
                      creds_tenant_id={'password': info['tenant_id']}, credentials={'password': info['client_secret']})
    elif mode == 'certificate':
        key = Path(info['certificate']['private_key_path']).read_text()
        params.update(self_deployed=True, creds_auth_id={'password': info['client_id']},
                      creds_tenant_id={'password': info['tenant_id']},
                      creds_certificate={'identifier': info['certificate']['thumbprint'], 'password': key})
    elif mode == 'oproxy':
        oproxy = info['oproxy']
        params.update(creds_auth_id={'password': f"{oproxy['registration_id']}@{oproxy['token_url']}"},
                      creds_tenant_id={'password': oproxy['token']}, credentials={'password': oproxy['key']})
    elif mode == 'managed_identity':
        params.update(use_managed_identities=True,
                      managed_identities_client_id={'password': info['managed_identity']['user_assigned_client_id']})
    else:
        raise ValueError(mode)
    params.update(extra)
    return params


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def document(self) -> dict:
        return json.loads(self.stdout)

    @property
    def entries(self) -> list:
        return self.document['entries']

    @property
    def incidents(self) -> list:
        return self.document['incidents'] or []


class Instance:
    """One configured integration instance: a params file, a state file and an output folder."""

    def __init__(self, sandbox: Any, workdir: Path, mode: str = 'client_secret', **params: Any):
        self.sandbox = sandbox
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.params_path = self.workdir / 'params.json'
        self.state_path = self.workdir / 'state.json'
        self.out_dir = self.workdir / 'out'
        self.mode = mode
        self.write_params(**params)

    def write_params(self, **params: Any) -> None:
        self.params = instance_params(self.sandbox.info, self.mode, **params)
        self.params_path.write_text(json.dumps(self.params))

    def environment(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(('MSAL_', 'IDENTITY_', 'MSI_', 'IMDS_'))}
        env['REQUESTS_CA_BUNDLE'] = self.sandbox.ca_path
        env['AZURE_POD_IDENTITY_AUTHORITY_HOST'] = self.sandbox.base_url
        env.pop('CURL_CA_BUNDLE', None)
        return env

    def command_line(self, command: str, args: dict, as_json: bool) -> list:
        line = [sys.executable, str(MODULE), command, *[f'{k}={v}' for k, v in args.items()],
                '--params', str(self.params_path), '--state', str(self.state_path), '--out', str(self.out_dir)]
        return line + (['--json'] if as_json else [])

    def run(self, command: str, as_json: bool = True, timeout: float = 300, **args: Any) -> CliResult:
        completed = subprocess.run(self.command_line(command, args, as_json), cwd=self.workdir, env=self.environment(),
                                   capture_output=True, text=True, timeout=timeout)
        return CliResult(completed.returncode, completed.stdout, completed.stderr)

    def start(self, command: str, **args: Any) -> subprocess.Popen:
        """Starts a command without waiting (for tests that kill it mid-run)."""
        return subprocess.Popen(self.command_line(command, args, True), cwd=self.workdir, env=self.environment(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def state(self) -> dict:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {}


def context_value(entry: dict, prefix: str) -> Optional[Any]:
    """The EntryContext value whose key starts with `prefix` (keys carry a DT suffix)."""
    for key, value in (entry.get('EntryContext') or {}).items():
        if key.split('(')[0] == prefix:
            return value
    return None


def ok(result: CliResult) -> CliResult:
    """A successful run: exit code 0 and no traceback."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
    return result


def failure(result: CliResult) -> str:
    """The error text of a failed run in terminal mode (as_json=False): exit code 1, message on stderr."""
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'Traceback' not in result.stderr and 'Traceback' not in result.stdout, result.stderr
    message = result.stderr.strip()
    assert message, 'no error message on stderr'
    return message
