"""Benchmarks of the MicrosoftGraphMail integration, run as a user runs it: its command line against the sandbox.

    python bench/run_benchmarks.py [--latency-ms 20] [--quick] [--keep] [--output bench/results.json]

Starts its own sandbox in a separate process (``python -m sandbox --port 0 ...``), drives it through the
control API over HTTPS (``/_sandbox/...``), runs every command of the integration as its own process
(``MicrosoftGraphMail.py COMMAND ... --json``), counts HTTP requests and bytes from the sandbox's statistics
and the integration process's peak RSS, prints a table and writes the figures to ``bench/results.json``.

Benchmarks print figures; they assert nothing. The exit status is 1 only when a benchmark could not run
(the integration failed or returned wrong data), not when a figure misses its target. See bench/README.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import select
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e_support import AUTH_MODES, CliResult, Instance  # noqa: E402  (the harness the e2e tests use)

MODULE = REPO / 'MicrosoftGraphMail.py'
DEFAULT_OUTPUT = REPO / 'bench' / 'results.json'
GNU_TIME = '/usr/bin/time'
MIB = 1024 * 1024

FETCH_MAILBOX = 'soc@contoso.com'
FETCH_FOLDER_NAME = 'Bench'
FETCH_FOLDER_PATH = f'Inbox/{FETCH_FOLDER_NAME}'
COMMAND_MAILBOX = 'bob@contoso.com'
DOWNLOAD_MAILBOX = 'alice@contoso.com'

# The existing integration's figures, as given in the brief (measured on the same sandbox, 20 ms latency).
EXISTING = {
    'fetch_requests_per_mail': '1.05',
    'fetch_graph_requests_per_mail': '1.02-1.05',
    'mark_read_requests': '100',
    'list_requests': '5',
    'download_100_rss_mb': '457 MB',
}

# Peak RSS of a child when neither GNU time is present: a dedicated wrapper process whose only child is the CLI.
RUSAGE_WRAPPER = (
    'import resource, subprocess, sys\n'
    'rc = subprocess.call(sys.argv[2:])\n'
    'open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n'
    'sys.exit(rc)\n'
)


class BenchmarkError(Exception):
    """The integration failed or returned wrong data: the figure cannot be trusted."""


# ====================================================================================== sandbox process
class RemoteSandbox:
    """The sandbox in its own process, steered over HTTP; offers what tests.e2e_support.Instance reads."""

    def __init__(self, state_dir: Path, latency_ms: int, log_path: Path, extra_args: tuple[str, ...] = (),
                 ready_timeout: float = 60):
        self.state_dir = state_dir
        self._log = open(log_path, 'w', encoding='utf-8')
        command = [sys.executable, '-m', 'sandbox', '--port', '0', '--state-dir', str(state_dir),
                   '--latency-ms', str(latency_ms), *extra_args]
        self.process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=self._log, text=True)
        line = self._read_ready_line(timeout=ready_timeout)
        if not line.startswith('READY '):
            self.stop()
            raise BenchmarkError(f'sandbox did not start: {line!r} (see {log_path})')
        self.base_url = line.split(' ', 1)[1].strip()
        self.info: dict = json.loads((state_dir / 'sandbox.json').read_text())
        self.ca_path: str = self.info['ca_path']
        self._ssl = ssl.create_default_context(cafile=self.ca_path)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                   urllib.request.HTTPSHandler(context=self._ssl))

    def _read_ready_line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        return self.process.stdout.readline() if ready else ''

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()

    # --- control API ----------------------------------------------------------------------------------
    def _call(self, method: str, name: str, body: Optional[dict] = None, query: Optional[dict] = None) -> Any:
        url = f'{self.base_url}/_sandbox/{name}' + (f'?{urllib.parse.urlencode(query)}' if query else '')
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={'Content-Type': 'application/json'} if data else {})
        try:
            with self._opener.open(request, timeout=120) as response:
                return json.loads(response.read() or b'null')
        except urllib.error.HTTPError as exc:
            raise BenchmarkError(f'sandbox control {method} {name} failed: {exc.code} {exc.read()[:300]!r}') from None

    def stats(self) -> dict:
        return self._call('GET', 'stats')

    def reset_stats(self) -> None:
        self._call('POST', 'reset-stats')

    def reset(self) -> None:
        self._call('POST', 'reset')

    def set_latency(self, ms: int) -> None:
        self._call('POST', 'latency', {'ms': ms})

    def add_message(self, user: str, folder: str = 'Inbox', **spec: Any) -> dict:
        return self._call('POST', 'messages', {'user': user, 'folder': folder, **spec})

    def add_messages_bulk(self, user: str, folder: str = 'Inbox', count: int = 100, **options: Any) -> dict:
        return self._call('POST', 'messages/bulk', {'user': user, 'folder': folder, 'count': count, **options})

    def mailbox(self, user: str, folder: Optional[str] = None) -> dict:
        return self._call('GET', 'mailbox', query={'user': user, **({'folder': folder} if folder else {})})

    def add_fault(self, **rule: Any) -> int:
        return self._call('POST', 'faults', rule)['id']

    def clear_faults(self) -> None:
        self._call('DELETE', 'faults')

    def set_mailbox_budget(self, requests: Optional[int], window_seconds: float = 600.0) -> dict:
        return self._call('POST', 'mailbox-budget', {'requests': requests, 'window_seconds': window_seconds})

    def set_single_attachment_select(self, honoured: bool) -> None:
        self._call('POST', 'single-attachment-select', {'honoured': honoured})


# ====================================================================================== running the CLI
@dataclass
class Run(CliResult):
    """A CLI run as the e2e harness sees it, plus its wall time and the process's peak memory."""
    wall_s: float = 0.0
    peak_rss_kb: Optional[int] = None

    @property
    def document(self) -> dict:
        try:
            return super().document
        except ValueError:
            raise BenchmarkError(f'not JSON output (rc={self.returncode}): {self.stdout[:300]!r} {self.stderr[:300]!r}') from None


RSS_OPTIONS = {'auto': None, 'time': True, 'rusage': False}
_use_gnu_time = os.access(GNU_TIME, os.X_OK)


def use_gnu_time(choice: str) -> None:
    global _use_gnu_time
    wanted = RSS_OPTIONS[choice]
    if wanted and not os.access(GNU_TIME, os.X_OK):
        raise SystemExit(f'--rss time: {GNU_TIME} is not available')
    _use_gnu_time = os.access(GNU_TIME, os.X_OK) if wanted is None else wanted


def rss_method() -> str:
    return ('GNU time %M (wait4 rusage of the CLI process)' if _use_gnu_time
            else 'getrusage(RUSAGE_CHILDREN) in a dedicated wrapper process whose only child is the CLI')


def run_cli(instance: Instance, command: str, timeout: float = 300, **args: Any) -> Run:
    """Runs one integration command as its own process; measures its wall time and peak RSS."""
    line = instance.command_line(command, args, True)
    with tempfile.NamedTemporaryFile('r', suffix='.rss', dir=instance.workdir, delete=False) as handle:
        rss_file = handle.name
    if _use_gnu_time:
        wrapped = [GNU_TIME, '-f', '%M', '-o', rss_file, *line]
    else:
        wrapped = [sys.executable, '-c', RUSAGE_WRAPPER, rss_file, *line]
    started = time.perf_counter()
    completed = subprocess.run(wrapped, cwd=instance.workdir, env=instance.environment(),
                               capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - started
    peak = None
    try:
        lines = [x for x in Path(rss_file).read_text().split('\n') if x.strip()]
        peak = int(lines[-1]) if lines else None  # GNU time writes "Command exited with ..." first on failure
    except (OSError, ValueError):
        pass
    finally:
        Path(rss_file).unlink(missing_ok=True)
    return Run(completed.returncode, completed.stdout, completed.stderr, wall, peak)


def checked(run: Run, what: str) -> Run:
    if run.returncode != 0:
        raise BenchmarkError(f'{what} failed (exit {run.returncode}): {run.stderr.strip()[:500] or run.stdout[:500]}')
    errors = [e for e in run.entries if isinstance(e, dict) and e.get('Type') == 4]
    if errors:
        raise BenchmarkError(f"{what} returned an error entry: {str(errors[0].get('Contents'))[:500]}")
    return run


# ====================================================================================== statistics
TOKEN_HINTS = ('oauth2/v2.0/token', 'obtain-token', 'identity/oauth2/token')


def is_token(key: str) -> bool:
    return any(h in key for h in TOKEN_HINTS)


def is_discovery(key: str) -> bool:
    return 'well-known' in key


def count(stats: dict, predicate: Callable[[str], bool]) -> int:
    return sum(v['requests'] for k, v in stats['endpoints'].items() if predicate(k))


def diff_stats(after: dict, before: dict) -> dict:
    """after - before, for totals and both endpoint maps (stats are cumulative since the last reset)."""
    def sub(a: dict, b: dict) -> dict:
        return {k: a[k] - b.get(k, 0) for k in ('requests', 'bytes_in', 'bytes_out')}
    return {'totals': {k: after['totals'][k] - before['totals'].get(k, 0) for k in after['totals']},
            'endpoints': {k: sub(v, before['endpoints'].get(k, {})) for k, v in after['endpoints'].items()
                          if v['requests'] != before['endpoints'].get(k, {}).get('requests', 0)},
            'batch_items': {k: sub(v, before['batch_items'].get(k, {})) for k, v in after['batch_items'].items()
                            if v['requests'] != before['batch_items'].get(k, {}).get('requests', 0)}}


def breakdown(stats: dict) -> dict:
    """A compact copy for results.json: totals, per-endpoint requests/bytes/statuses, per-batch-item counts."""
    def compact(table: dict) -> dict:
        rows = sorted(table.items(), key=lambda kv: (-kv[1]['requests'], kv[0]))
        return {k: {'requests': v['requests'], 'bytes_in': v['bytes_in'], 'bytes_out': v['bytes_out'],
                    **({'statuses': v['statuses']} if 'statuses' in v else {})} for k, v in rows}
    return {'totals': dict(stats['totals']), 'endpoints': compact(stats['endpoints']),
            'batch_items': compact(stats['batch_items'])}


def breakdown_lines(stats: dict, indent: str = '    ') -> list[str]:
    lines = []
    for key, value in sorted(stats['endpoints'].items(), key=lambda kv: -kv[1]['requests']):
        lines.append(f"{indent}{value['requests']:>6}  {key}  ({human_bytes(value['bytes_out'])} down, "
                     f"{human_bytes(value['bytes_in'])} up)")
    for key, value in sorted(stats['batch_items'].items(), key=lambda kv: -kv[1]['requests']):
        lines.append(f"{indent}{value['requests']:>6}  $batch item: {key}")
    return lines


def human_bytes(n: float) -> str:
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if abs(n) < 1024 or unit == 'GiB':
            return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1024
    return f'{n} B'


# ====================================================================================== figures
class Report:
    def __init__(self) -> None:
        self.scope = ''
        self.figures: list[dict] = []
        self.details: dict[str, Any] = {}
        self.errors: list[dict] = []

    def add(self, benchmark: str, figure: str, value: Any, unit: str = '', *, target: Optional[float] = None,
            op: str = '<=', existing: Optional[str] = None, shown: Optional[str] = None) -> None:
        if target is None:
            result = 'info'
        else:
            ok = value <= target if op == '<=' else value < target if op == '<' else value == target
            result = 'pass' if ok else 'miss'
        key = f"{self.scope}.{re.sub(r'[^a-z0-9]+', '_', figure.lower()).strip('_')}"
        self.figures.append({'key': key, 'benchmark': benchmark, 'figure': figure, 'value': value, 'unit': unit,
                             'shown': shown if shown is not None else format_value(value, unit),
                             'target': None if target is None else f'{op} {format_value(target, unit)}',
                             'target_value': target, 'target_op': None if target is None else op,
                             'existing': existing, 'result': result})

    def error(self, benchmark: str, exc: BaseException) -> None:
        self.errors.append({'benchmark': benchmark, 'error': f'{type(exc).__name__}: {exc}'})
        self.figures.append({'key': f'{self.scope}.error', 'benchmark': benchmark, 'figure': '(did not run)',
                             'value': None, 'unit': '',
                             'shown': 'ERROR', 'target': None, 'target_value': None, 'target_op': None,
                             'existing': None, 'result': 'error'})


def format_value(value: Any, unit: str) -> str:
    if isinstance(value, float):
        text = f'{value:.3f}' if abs(value) < 10 else f'{value:.1f}'
    else:
        text = str(value)
    return f'{text} {unit}'.strip()


def print_table(figures: list[dict]) -> None:
    headers = ('benchmark', 'figure', 'measured', 'target', '[existing]', 'result')
    rows = [(f['benchmark'], f['figure'], f['shown'], f['target'] or '-',
             f"[{f['existing']}]" if f['existing'] else '-', f['result'].upper() if f['result'] == 'miss'
             else f['result']) for f in figures]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = '  '.join(h.ljust(w) for h, w in zip(headers, widths))
    print(line)
    print('-' * len(line))
    previous = None
    for row in rows:
        shown = row if row[0] != previous else ('',) + row[1:]
        previous = row[0]
        print('  '.join(c.ljust(w) for c, w in zip(shown, widths)).rstrip())


# ====================================================================================== benchmarks
class Bench:
    def __init__(self, sandbox: RemoteSandbox, workdir: Path, report: Report, quick: bool, latency_ms: int):
        self.sb = sandbox
        self.workdir = workdir
        self.report = report
        self.quick = quick
        self.latency_ms = latency_ms
        self._counter = 0

    def instance(self, name: str, mode: str = 'client_secret', **params: Any) -> Instance:
        self._counter += 1
        return Instance(self.sb, self.workdir / f'{self._counter:02d}-{name}', mode, **params)

    def graph_budget(self, name: str, stats: dict) -> None:
        """The figures Graph's throttling sees: requests with $batch items counted, round trips, 429s."""
        totals = stats['totals']
        self.report.add(name, 'Graph requests (sub-requests counted)', totals['graph_requests'])
        self.report.add(name, 'round trips', totals['round_trips'],
                        shown=f"{totals['round_trips']} ({totals['requests']} HTTP requests with identity)")
        self.report.add(name, '429s received', totals['throttled'])

    def warm(self, instance: Instance, user: str) -> None:
        """A first command, so the measured one finds a cached token as in everyday use."""
        checked(run_cli(instance, 'msgraph-mail-list-folders', user_id=user, limit=1), 'warm-up list-folders')

    # ---------------------------------------------------------------------------------------- fetch
    def fetch(self, mails: int, attachment_ratio: float, attachment_size: int, throttled: bool = False,
              budget: Optional[tuple[int, float]] = None) -> None:
        with_att = attachment_ratio > 0
        self.report.scope = ('fetch_throttled' if throttled else f'fetch_budget_{budget[0]}' if budget else
                             'fetch_with_attachments' if with_att else 'fetch_without_attachments')
        name = (f'fetch {mails} mails, {attachment_ratio:.0%} with a {attachment_size // 1024} KiB attachment'
                if with_att else f'fetch {mails} mails, no attachments')
        if throttled:
            name += ', 429 (Retry-After 1) on every 5th Graph request'
        if budget:
            name += f', mailbox budget {budget[0]} Graph requests per {budget[1]:g} s'
        self.sb.reset()
        admin = self.instance('fetch-setup')
        checked(run_cli(admin, 'msgraph-mail-create-folder', user_id=FETCH_MAILBOX,
                        new_folder_name=FETCH_FOLDER_NAME, parent_folder_id='Inbox'), 'create fetch folder')
        seeded = self.sb.add_messages_bulk(FETCH_MAILBOX, FETCH_FOLDER_PATH, mails, attachment_ratio=attachment_ratio,
                                           attachment_size=attachment_size, step_seconds=60)
        expected_ids = set(seeded['immutable_ids'])
        # A new, cold instance: its first run acquires the token (counted: 2 requests over the whole drain).
        fetcher = self.instance('fetch-att' if with_att else 'fetch-plain', isFetch=True,
                                mailbox_to_fetch=FETCH_MAILBOX, folder_to_fetch=FETCH_FOLDER_PATH,
                                first_fetch='2 days', fetch_limit='50')
        self.sb.reset_stats()
        if throttled:  # Graph counts every $batch item as a request; the envelope is not one
            self.sb.add_fault(path_regex=r'^/v1\.0/(?!\$batch$)', status=429, retry_after=1, every_nth=5, in_batch=True)
        if budget:  # Graph's per-app, per-mailbox budget (10,000 per 10 minutes), scaled down to a short run
            self.sb.set_mailbox_budget(budget[0], budget[1])
        throttled = throttled or bool(budget)
        runs, seen, attachments_seen, duplicates, failed_runs = [], set(), 0, 0, 0
        before = self.sb.stats()
        drained_stats = before
        max_runs = mails // 50 + 10
        idle_run: Optional[dict] = None
        for number in range(1, max_runs + 1):
            run = run_cli(fetcher, 'fetch-incidents')
            if run.returncode != 0 and not (throttled and failed_runs < 10):
                raise BenchmarkError(f'fetch run {number} failed: {run.stderr.strip()[:500]}')
            if run.returncode != 0:  # the platform keeps the last run; the next run starts from it
                failed_runs += 1
                continue
            incidents = run.incidents
            after = self.sb.stats()
            delta = diff_stats(after, before)
            before = after
            record = {'run': number, 'incidents': len(incidents), 'wall_s': round(run.wall_s, 3),
                      'peak_rss_kb': run.peak_rss_kb, 'requests': delta['totals']['requests'],
                      'graph_requests': delta['totals']['graph_requests'], 'throttled': delta['totals']['throttled'],
                      'batch_items': delta['totals']['batch_items'], 'bytes_out': delta['totals']['bytes_out'],
                      'bytes_in': delta['totals']['bytes_in']}
            if not incidents:
                idle_run = record
                break
            for incident in incidents:
                raw = json.loads(incident['rawJSON'])
                duplicates += raw['ID'] in seen
                seen.add(raw["ID"])
                for attachment in incident.get('attachment') or []:
                    attachments_seen += 1
                    if not os.path.isfile(attachment.get('localPath') or ''):
                        raise BenchmarkError(f"fetched attachment file missing: {attachment.get('localPath')}")
            runs.append(record)
            drained_stats = after
        else:
            raise BenchmarkError(f'fetch did not drain {mails} mails in {max_runs} runs')
        missing = expected_ids - set(seen)
        expected_attachments = sum(1 for i in range(mails)
                                   if int((i + 1) * attachment_ratio) > int(i * attachment_ratio))
        if missing or duplicates or attachments_seen != expected_attachments:
            raise BenchmarkError(f'fetch returned wrong mail: {len(missing)} missing, {duplicates} duplicates, '
                                 f'{attachments_seen} attachments (expected {expected_attachments})')
        if throttled:
            self.sb.clear_faults()
            self.sb.set_mailbox_budget(None)
        fetched = len(seen)
        totals = drained_stats['totals']
        walls = [r['wall_s'] for r in runs]
        rss = [r['peak_rss_kb'] for r in runs if r['peak_rss_kb']]
        self.report.add(name, 'Graph requests per fetched mail (sub-requests counted)', totals['graph_requests'] / fetched,
                        target=None if throttled else 0.7, existing=None if throttled or not with_att else
                        EXISTING['fetch_graph_requests_per_mail'],
                        shown=f"{totals['graph_requests'] / fetched:.3f} ({totals['graph_requests']} requests)")
        self.report.add(name, 'round trips per fetched mail', totals['round_trips'] / fetched,
                        target=None if throttled else 0.1,
                        shown=f"{totals['round_trips'] / fetched:.3f} ({totals['round_trips']} to Graph)")
        self.report.add(name, '429s received', totals['throttled'])
        if throttled:
            self.report.add(name, 'wall time per delivered mail', round(sum(walls) / fetched, 3), 's',
                            shown=f'{sum(walls) / fetched * 1000:.0f} ms ({sum(walls):.1f} s for {fetched} mails, '
                                  f'{failed_runs} failed runs)')
        self.report.add(name, 'HTTP requests per fetched mail', totals['requests'] / fetched,
                        existing=EXISTING['fetch_requests_per_mail'] if with_att and not throttled else None)
        self.report.add(name, 'HTTP requests (total)', totals['requests'],
                        shown=f"{totals['requests']} (token {count(drained_stats, is_token)}, "
                              f"discovery {count(drained_stats, is_discovery)})")
        self.report.add(name, '$batch items per fetched mail', totals['batch_items'] / fetched,
                        shown=f"{totals['batch_items'] / fetched:.3f} ({totals['batch_items']} items)")
        self.report.add(name, 'bytes per fetched mail (down + up)', round((totals['bytes_out'] + totals['bytes_in']) / fetched),
                        'B', shown=f"{human_bytes((totals['bytes_out'] + totals['bytes_in']) / fetched)} "
                                   f"({human_bytes(totals['bytes_out'] / fetched)} down)")
        self.report.add(name, 'fetch runs to drain (limit 50)', len(runs), shown=f'{len(runs)} runs, {fetched} mails, '
                        f'{attachments_seen} attachments')
        self.report.add(name, 'wall time total', round(sum(walls), 2), 's')
        self.report.add(name, 'wall time per run (median / max)', round(statistics.median(walls), 3), 's',
                        shown=f'{statistics.median(walls):.2f} / {max(walls):.2f} s')
        if rss:
            self.report.add(name, 'peak RSS of a fetch run (max)', round(max(rss) / 1024, 1), 'MiB')
        if idle_run:
            self.report.add(name, 'idle run after draining: requests', idle_run['requests'])
        self.report.details[self.report.scope] = {'mails': fetched, 'attachments': attachments_seen, 'runs': runs,
                                    'idle_run': idle_run, 'stats': breakdown(drained_stats)}
        self._print_breakdown(name, drained_stats)

    # ---------------------------------------------------------------------------------------- commands
    def mark_read(self, mails: int = 100) -> None:
        name = f'mark {mails} mails read'
        self.report.scope = 'mark_read'
        self.sb.reset()
        ids = self.sb.add_messages_bulk(COMMAND_MAILBOX, 'Inbox', mails, subject_prefix='Mark me')['immutable_ids']
        instance = self.instance('mark-read')
        self.warm(instance, COMMAND_MAILBOX)
        self.sb.reset_stats()
        run = checked(run_cli(instance, 'msgraph-mail-update-email-status', user_id=COMMAND_MAILBOX,
                              message_ids=','.join(ids), status='Read'), 'update-email-status')
        stats = self.sb.stats()
        inbox = self.sb.mailbox(COMMAND_MAILBOX, 'Inbox')['folders'][0]['messages']
        read = sum(1 for m in inbox if m['immutableId'] in set(ids) and m['isRead'])
        if read != mails:
            raise BenchmarkError(f'only {read} of {mails} mails are read after update-email-status')
        self.report.add(name, 'HTTP requests', stats['totals']['requests'], target=5, existing=EXISTING['mark_read_requests'])
        self.report.add(name, '$batch items', stats['totals']['batch_items'])
        self.graph_budget(name, stats)
        self.report.add(name, 'wall time', round(run.wall_s, 3), 's')
        if run.peak_rss_kb:
            self.report.add(name, 'peak RSS', round(run.peak_rss_kb / 1024, 1), 'MiB')
        self.report.details['mark_read'] = {'mails': mails, 'marked_read': read, 'wall_s': run.wall_s,
                                            'stats': breakdown(stats)}
        self._print_breakdown(name, stats)

    def list_emails(self, page_size: int = 500) -> None:
        name = f'list {page_size} mails'
        self.report.scope = 'list_emails'
        self.sb.reset()
        self.sb.add_messages_bulk(COMMAND_MAILBOX, 'Inbox', page_size + 100, subject_prefix='List me')
        instance = self.instance('list')
        self.warm(instance, COMMAND_MAILBOX)
        self.sb.reset_stats()
        run = checked(run_cli(instance, 'msgraph-mail-list-emails', user_id=COMMAND_MAILBOX, page_size=page_size),
                      'list-emails')
        stats = self.sb.stats()
        listed = len(run.entries[0]['Contents'])
        if listed != page_size:
            raise BenchmarkError(f'list-emails page_size={page_size} returned {listed} mails')
        self.report.add(name, 'HTTP requests', stats['totals']['requests'], target=5, existing=EXISTING['list_requests'])
        self.report.add(name, 'bytes per listed mail', round(stats['totals']['bytes_out'] / listed), 'B',
                        shown=human_bytes(stats['totals']['bytes_out'] / listed))
        self.graph_budget(name, stats)
        self.report.add(name, 'wall time', round(run.wall_s, 3), 's')
        if run.peak_rss_kb:
            self.report.add(name, 'peak RSS', round(run.peak_rss_kb / 1024, 1), 'MiB')
        self.report.details['list_emails'] = {'listed': listed, 'wall_s': run.wall_s, 'stats': breakdown(stats)}
        self._print_breakdown(name, stats)

    # ---------------------------------------------------------------------------------------- download
    def download(self, size_mib: int, target_mb: Optional[float], select_ignored: bool = False) -> None:
        name = f'download a {size_mib} MiB attachment' + (', $select ignored on the single attachment'
                                                          if select_ignored else '')
        self.report.scope = f'download_{size_mib}mib' + ('_select_ignored' if select_ignored else '')
        size = size_mib * MIB
        self.sb.reset()
        self.sb.set_single_attachment_select(not select_ignored)
        message = self.sb.add_message(DOWNLOAD_MAILBOX, 'Inbox', subject=f'{size_mib} MiB attachment',
                                      attachments=[{'name': f'big-{size_mib}MiB.bin', 'size': size,
                                                    'contentType': 'application/octet-stream'}])
        message_id = message['immutableId']
        instance = self.instance(f'download-{size_mib}')
        listing = checked(run_cli(instance, 'msgraph-mail-list-attachments', user_id=DOWNLOAD_MAILBOX,
                                  message_id=message_id), 'list-attachments')  # also the warm-up
        attachment_id = listing.entries[0]['Contents'][0]['id']
        self.sb.reset_stats()
        try:
            run = checked(run_cli(instance, 'msgraph-mail-get-attachment', user_id=DOWNLOAD_MAILBOX,
                                  message_id=message_id, attachment_id=attachment_id), 'get-attachment')
        finally:
            self.sb.set_single_attachment_select(True)
        stats = self.sb.stats()
        files = [e for e in run.entries if isinstance(e, dict) and e.get('Type') in (3, 9)]
        if len(files) != 1 or not os.path.isfile(files[0]['File']):
            raise BenchmarkError(f'get-attachment wrote no file: {run.stdout[:300]}')
        written = os.path.getsize(files[0]['File'])
        os.unlink(files[0]['File'])
        if written != size:
            raise BenchmarkError(f'downloaded file has {written} bytes, expected {size}')
        if run.peak_rss_kb is None:
            raise BenchmarkError('peak RSS could not be measured')
        peak_mb = round(run.peak_rss_kb / 1024, 1)
        self.report.add(name, 'peak RSS of the integration process', peak_mb, 'MiB', target=target_mb, op='<',
                        existing=EXISTING['download_100_rss_mb'] if size_mib == 100 else None)
        self.graph_budget(name, stats)
        self.report.add(name, 'wall time', round(run.wall_s, 2), 's',
                        shown=f'{run.wall_s:.2f} s ({size_mib / run.wall_s:.0f} MiB/s)')
        self.report.details[self.report.scope] = {
            'bytes': written, 'peak_rss_kb': run.peak_rss_kb, 'baseline_rss_kb': listing.peak_rss_kb,
            'wall_s': run.wall_s, 'stats': breakdown(stats)}
        self._print_breakdown(name, stats)

    def baseline_rss(self) -> None:
        """Peak RSS of a small command: the interpreter, requests and the integration module, for comparison."""
        self.report.scope = 'baseline'
        instance = self.instance('baseline')
        self.warm(instance, COMMAND_MAILBOX)
        run = checked(run_cli(instance, 'msgraph-mail-list-folders', user_id=COMMAND_MAILBOX), 'list-folders')
        if run.peak_rss_kb:
            self.report.add('baseline: a small command (list-folders)', 'peak RSS of the integration process',
                            round(run.peak_rss_kb / 1024, 1), 'MiB')
        self.report.add('baseline: a small command (list-folders)', 'wall time', round(run.wall_s, 3), 's')

    # ---------------------------------------------------------------------------------------- token reuse
    def token_reuse(self, modes: tuple) -> None:
        rows = {}
        for mode in modes:
            name = f'second command within the token life ({mode})'
            self.report.scope = f'token_reuse_{mode}'
            self.sb.reset_stats()
            instance = self.instance(f'token-{mode}', mode)
            checked(run_cli(instance, 'msgraph-mail-list-folders', user_id=COMMAND_MAILBOX), 'first command')
            first = self.sb.stats()
            self.sb.reset_stats()
            checked(run_cli(instance, 'msgraph-mail-list-emails', user_id=COMMAND_MAILBOX), 'second command')
            second = self.sb.stats()
            self.report.add(name, 'token requests', count(second, is_token), target=0, op='<=')
            self.report.add(name, 'discovery requests', count(second, is_discovery), target=0, op='<=')
            self.report.add(name, 'HTTP requests (1st command / 2nd)', second['totals']['requests'],
                            shown=f"{first['totals']['requests']} / {second['totals']['requests']} "
                                  f"(1st: token {count(first, is_token)}, discovery {count(first, is_discovery)})")
            rows[mode] = {'first': breakdown(first), 'second': breakdown(second)}
        self.report.details['token_reuse'] = rows

    def _print_breakdown(self, name: str, stats: dict) -> None:
        print(f'  {name}: {stats["totals"]["requests"]} HTTP requests, {stats["totals"]["batch_items"]} $batch items')
        for line in breakdown_lines(stats):
            print(line)
        sys.stdout.flush()


# ====================================================================================== main
def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_head() -> str:
    try:
        return subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO, capture_output=True, text=True, check=False,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--latency-ms', type=int, default=20, help='latency the sandbox adds to every response')
    parser.add_argument('--quick', action='store_true', help='smaller data (200 mails, 20 MiB) for a fast check')
    parser.add_argument('--output', default=str(DEFAULT_OUTPUT), help='where the JSON figures go')
    parser.add_argument('--attachment-kib', type=int, default=64, help='size of each fetched attachment')
    parser.add_argument('--rss', choices=sorted(RSS_OPTIONS), default='auto',
                        help='how the CLI process peak RSS is measured: GNU time, a getrusage wrapper, or auto')
    parser.add_argument('--only', action='append', default=[], metavar='TEXT',
                        help='run only the benchmarks whose label contains TEXT (repeatable), e.g. --only fetch')
    parser.add_argument('--keep', action='store_true', help='keep the work folder (instances, outputs, sandbox log)')
    options = parser.parse_args(argv)
    use_gnu_time(options.rss)

    started_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix='mgm-bench-'))
    report = Report()
    fetch_mails = 200 if options.quick else 1000
    downloads = [(20, None)] if options.quick else [(100, 80.0), (50, 80.0)]
    print(f'MicrosoftGraphMail benchmarks: latency {options.latency_ms} ms, {"quick" if options.quick else "full"} run, '
          f'work folder {workdir}')
    print(f'peak RSS: {rss_method()}\n')
    sandbox = RemoteSandbox(workdir / 'sandbox', options.latency_ms, workdir / 'sandbox.log')
    try:
        bench = Bench(sandbox, workdir, report, options.quick, options.latency_ms)
        steps: list[tuple[str, Callable[[], None]]] = [
            ('fetch (attachments)', lambda: bench.fetch(fetch_mails, 0.3, options.attachment_kib * 1024)),
            ('fetch (no attachments)', lambda: bench.fetch(fetch_mails, 0.0, 0)),
            ('fetch (throttled)', lambda: bench.fetch(fetch_mails // 2, 0.3, options.attachment_kib * 1024,
                                                      throttled=True)),
            ('fetch (mailbox budget)', lambda: bench.fetch(fetch_mails // 2, 0.3, options.attachment_kib * 1024,
                                                           budget=(100, 2.0))),
            ('mark read', lambda: bench.mark_read(100)),
            ('list', lambda: bench.list_emails(500)),
            ('baseline', bench.baseline_rss),
            *[(f'download {size}', (lambda s=size, t=target: bench.download(s, t))) for size, target in downloads],
            *[(f'download {size} ($select ignored)', (lambda s=size, t=target: bench.download(s, t, True)))
              for size, target in downloads[:1]],
            ('token reuse', lambda: bench.token_reuse(AUTH_MODES)),
        ]
        for label, step in [s for s in steps if not options.only or any(o in s[0] for o in options.only)]:
            step_started = time.perf_counter()
            print(f'[{label}]')
            report.scope = re.sub(r'[^a-z0-9]+', '_', label.lower()).strip('_')
            sys.stdout.flush()
            try:
                step()
            except Exception as exc:  # one broken benchmark must not hide the others' figures
                report.error(label, exc)
                print(f'  ERROR: {exc}')
                traceback.print_exc(limit=3)
            print(f'  ({time.perf_counter() - step_started:.1f} s)\n')
    finally:
        sandbox.stop()
        if options.keep:
            print(f'work folder kept: {workdir}')
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    duration = time.perf_counter() - started
    print_table(report.figures)
    misses = [f for f in report.figures if f['result'] == 'miss']
    print(f"\n{sum(f['result'] == 'pass' for f in report.figures)} pass, {len(misses)} miss, "
          f'{len(report.errors)} error(s); {duration:.0f} s in all')
    document = {
        'meta': {'started': started_at.isoformat(timespec='seconds'), 'duration_s': round(duration, 1),
                 'latency_ms': options.latency_ms, 'quick': options.quick, 'fetch_mails': fetch_mails,
                 'fetch_attachment_bytes': options.attachment_kib * 1024, 'fetch_limit': 50,
                 'rss_method': rss_method(), 'python': platform.python_version(), 'platform': platform.platform(),
                 'cpus': os.cpu_count(), 'git_head': git_head(),
                 'integration_sha256': file_sha256(MODULE),
                 'existing_figures_source': 'the existing integration, as given in the benchmark brief'},
        'figures': report.figures, 'errors': report.errors, 'details': report.details,
    }
    Path(options.output).write_text(json.dumps(document, indent=1) + '\n', encoding='utf-8')
    print(f'figures written to {options.output}')
    return 1 if report.errors else 0


if __name__ == '__main__':
    sys.exit(main())
