"""Campaign-response benchmark: tenant-wide search by Message-ID (and the move of the copies found) through the
command line against the sandbox, next to the floor Graph's limits impose.

    python bench/run_campaign.py [--sizes 1000,10000] [--latency-ms 20] [--share 0.05] [--repeat 1] [--e2e]

Sandbox model (see bench/README.md "Campaign response"): every response takes --latency-ms; each $batch sub-request
takes the same time again while it runs, Outlook runs at most 4 sub-requests of one batch at once (a sequential batch,
each item dependsOn the one before: one at a time), and at most 4 Graph requests of the app (sub-requests included)
run at a time (a 5th is answered 429 ApplicationThrottled). The floor is therefore mailboxes x latency / 4: one
sub-request per mailbox, four at a time.

The engine sends sequential batches, four side by side, so no lane waits while an answer travels back. A sub-request
that fails (a user without a mailbox) leaves the rest of its batch unrun (424); those are sent again: `not_run_424`
counts them and `sent_per_mailbox` includes them (`requests_per_mailbox` counts what Graph ran).

Where the time goes, from the sandbox's request log: `model_s` is what the latency model alone charges for the
$batch calls actually sent, as lane time over the 4 lanes (see batch_time_split), `sandbox_s` the same from what the
sandbox measured (its own processing included), `client_s` the rest of the wall time (process start, packing, the
pause between an answer and the next send, HTTP transfer, a polling re-run).
`--repeat N` runs the search N times and reports the run with the median wall time (the machine is shared).

`--e2e` also runs the full-size end-to-end scenario of tests/test_e2e_campaign.py (2,000 users, 600 copies, 429/503
on every 7th sub-request) and reports whether it passed. Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.run_benchmarks import BenchmarkError, RemoteSandbox, rss_method, run_cli  # noqa: E402
from sandbox.seed import SEED_UPNS  # noqa: E402
from tests.e2e_support import Instance, context_value  # noqa: E402


class TenantSandbox(RemoteSandbox):
    """The sandbox process with a generated tenant and the $batch sub-request latency model."""

    def __init__(self, state_dir: Path, latency_ms: int, tenant_size: int, log_path: Path):
        # A large tenant takes a while to generate before the sandbox is ready.
        super().__init__(state_dir, latency_ms, log_path, ready_timeout=600, extra_args=(
            '--batch-item-latency-ms', str(latency_ms), '--tenant-size', str(tenant_size)))

    def plant_campaign(self, **options: Any) -> dict:
        return self._call('POST', 'campaign', options)

    def concurrency(self) -> dict:
        return self._call('GET', 'concurrency')

    def reset_concurrency(self) -> dict:
        return self._call('POST', 'concurrency', {'reset_counters': True})

    def log(self) -> list:
        return self._call('GET', 'log')


def batch_time_split(log: list, latency_ms: int) -> tuple[float, float, int]:
    """(seconds the latency model charges for the $batch calls in `log`, seconds the sandbox measured for them,
    sub-requests Graph did not run: answered 424 after an earlier one of their sequential batch failed).

    Both times are lane time spread over the 4 lanes the app has: a parallel batch holds min(items, 4) lanes for
    latency + item latency x ceil(items / 4), a sequential one holds 1 lane for latency + item latency x items run.
    That is what the model would charge with every lane kept busy, the client's pauses between batches left out."""
    model_ms = measured_ms = 0.0
    not_run = 0
    for entry in log:
        summary = entry.get('batch')
        if not summary:
            continue
        ran = summary['items'] - summary['not_run']
        not_run += summary['not_run']
        lanes, rounds = (1, ran) if summary['sequential'] else (min(4, summary['items']), -(-ran // 4))
        model_ms += lanes * (latency_ms + latency_ms * rounds)
        measured_ms += lanes * entry.get('duration_ms', 0.0)
    return model_ms / 4000, measured_ms / 4000, not_run


def totals(stats: dict) -> tuple[int, int]:
    """(HTTP round trips to Graph, Graph requests as Graph counts them: sub-requests instead of $batch envelopes)."""
    graph = {k: v['requests'] for k, v in stats['endpoints'].items() if ' /v1.0' in k or k.endswith('(concurrency limit)')}
    trips = sum(graph.values())
    envelopes = graph.get('POST /v1.0/$batch', 0)
    return trips, trips - envelopes + stats['totals']['batch_items']


def measure(size: int, latency_ms: int, share: float, workdir: Path, repeat: int = 1) -> list[dict]:
    sandbox = TenantSandbox(workdir / f'sandbox-{size}', latency_ms, size, workdir / f'sandbox-{size}.log')
    rows = []
    try:
        campaign = sandbox.plant_campaign(share=share)
        copies = len(campaign['planted'])
        instance = Instance(sandbox, workdir / f'instance-{size}')
        mailboxes = size + len(SEED_UPNS)  # the generated users and the seed mailboxes
        floor = mailboxes * latency_ms / 1000 / 4
        warm = run_cli(instance, 'msgraph-mail-list-folders', user_id='soc@contoso.com')  # token cached, as in use
        if warm.returncode:
            raise BenchmarkError(f'warm-up failed: {warm.stderr[:300]}')
        for name, args in (('search', {'all_mailboxes': 'true', 'internet_message_id': campaign['internet_message_id']}),
                           ('move', None)):
            if name == 'move':
                args = {'search_id': search_id, 'action': 'move_to_deleted_items', 'dry_run': 'false'}
            command = 'msgraph-mail-search-mailboxes' if name == 'search' else 'msgraph-mail-remediate-emails'
            runs = []
            for _ in range(repeat if name == 'search' else 1):
                sandbox.reset_stats()
                sandbox.reset_concurrency()
                run = run_cli(instance, command, timeout=3600, **args)
                if run.returncode:
                    raise BenchmarkError(f'{name} failed: {run.stderr[-500:]} {run.stdout[-500:]}')
                runs.append((run.wall_s, run, sandbox.stats(), sandbox.concurrency(), batch_time_split(sandbox.log(), latency_ms)))
            runs.sort(key=lambda r: r[0])
            _, run, stats, concurrency, (model_s, sandbox_s, not_run) = runs[len(runs) // 2]
            entry = next(e for e in run.entries if e.get('EntryContext'))
            result = context_value(entry, 'MSGraphMail.CampaignSearch' if name == 'search' else 'MSGraphMail.Remediation')
            if name == 'search':
                search_id = result['ID']
                if result['ItemsFound'] != copies:
                    raise BenchmarkError(f"search found {result['ItemsFound']} copies, {copies} were planted")
            elif result['ItemsSucceeded'] != copies:
                raise BenchmarkError(f"move did {result['ItemsSucceeded']} of {copies}")
            trips, requests = totals(stats)
            units = mailboxes if name == 'search' else copies
            row_floor = units * latency_ms / 1000 / 4
            rows.append({'size': size, 'workload': name, 'mailboxes': mailboxes, 'copies': copies,
                         'graph_requests': requests, 'round_trips': trips, 'not_run_424': not_run,
                         'sent_per_mailbox': round((requests + not_run) / units, 3),
                         'requests_per_mailbox': round(requests / units, 3), 'round_trips_per_mailbox': round(trips / units, 4),
                         'wall_s': round(run.wall_s, 2), 'floor_s': round(row_floor, 2),
                         'vs_floor': round(run.wall_s / row_floor, 2) if row_floor else None,
                         'runs': len(runs), 'wall_s_all': [round(r[0], 2) for r in runs],
                         'model_s': round(model_s, 2), 'sandbox_s': round(sandbox_s, 2),
                         'client_s': round(run.wall_s - sandbox_s, 2),
                         'peak_rss_mb': round((run.peak_rss_kb or 0) / 1024, 1),
                         'concurrency_429': max(r[3]['rejected'] for r in runs),
                         'sandbox_peak_in_flight': max(r[3]['peak'] for r in runs)})
        del floor
    finally:
        sandbox.stop()
    return rows


def print_rows(rows: list[dict], latency_ms: int) -> None:
    print(f'\nCampaign response, sandbox latency {latency_ms} ms per response and per running sub-request, '
          f'4 in flight per app; peak RSS: {rss_method()}')
    header = ['size', 'workload', 'mailboxes', 'copies', 'graph_requests', 'requests_per_mailbox', 'not_run_424',
              'sent_per_mailbox', 'round_trips',
              'round_trips_per_mailbox', 'wall_s', 'floor_s', 'vs_floor', 'model_s', 'sandbox_s', 'client_s', 'peak_rss_mb',
              'concurrency_429']
    print(' | '.join(header))
    for row in rows:
        print(' | '.join(str(row[h]) for h in header))


def run_full_e2e() -> int:
    env = dict(os.environ, CAMPAIGN_E2E_TENANT='2000', CAMPAIGN_E2E_COPIES='600')
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                                'tests/test_e2e_campaign.py'], cwd=REPO, env=env, capture_output=True, text=True)
    print(f'\nFull end-to-end scenario (2,000 users, 600 copies, 429/503 on every 7th sub-request): '
          f"{'passed' if completed.returncode == 0 else 'FAILED'} in {time.perf_counter() - started:.1f} s")
    if completed.returncode:
        print(completed.stdout[-3000:])
    return completed.returncode


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', default='1000,10000')
    parser.add_argument('--latency-ms', type=int, default=20)
    parser.add_argument('--share', type=float, default=0.05, help='share of mailboxes holding a copy')
    parser.add_argument('--repeat', type=int, default=1, help='search runs per size; the median one is reported')
    parser.add_argument('--e2e', action='store_true', help='also run the 2,000/600 end-to-end scenario')
    parser.add_argument('--output', default=str(REPO / 'bench' / 'campaign_results.json'))
    options = parser.parse_args(argv)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix='campaign-bench-') as folder:
        for size in [int(s) for s in options.sizes.split(',') if s]:
            rows.extend(measure(size, options.latency_ms, options.share, Path(folder), max(1, options.repeat)))
    print_rows(rows, options.latency_ms)
    Path(options.output).write_text(json.dumps({'latency_ms': options.latency_ms, 'rows': rows}, indent=2) + '\n')
    return run_full_e2e() if options.e2e else 0


if __name__ == '__main__':
    sys.exit(main())
