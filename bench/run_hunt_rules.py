"""Benchmark of msgraph-mail-hunt-rules: a tenant-wide inbox rule hunt over 1,000 generated users, run as a user runs
it (the command line against the sandbox), with the sandbox adding 20 ms to every response.

    python bench/run_hunt_rules.py [--users 1000] [--latency-ms 20] [--output bench/results_hunt_rules.json]

The sandbox runs in this process (its server thread), so the rules can be planted straight into its store:
half of the mailboxes get a benign filing rule (one folder to name), 2 % a rule forwarding payroll mail outside.
Latency model as in bench/run_campaign.py: 20 ms added to every response and 20 ms per $batch sub-request while it
runs (Outlook runs 4 at a time), so the floor Graph's limits impose is Graph requests x latency / 4. It prints
requests as Graph throttles them (each $batch sub-request counts), HTTP round trips, wall time against that floor,
peak RSS of the command and whether every planted rule was found; it asserts nothing (exit status 1 only when the
hunt failed or missed rules).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sandbox import Sandbox  # noqa: E402
from sandbox.seed_rules import HUNT_DROP, plant_rules  # noqa: E402
from tests.e2e_support import Instance, context_value  # noqa: E402

DEFAULT_OUTPUT = REPO / 'bench' / 'results_hunt_rules.json'


def graph_counts(stats: dict) -> dict:
    endpoints = {k: v['requests'] for k, v in stats['endpoints'].items() if '/v1.0/' in k}
    envelopes = endpoints.get('POST /v1.0/$batch', 0)
    sub_requests = stats['totals']['batch_items']
    direct = sum(n for k, n in endpoints.items() if k != 'POST /v1.0/$batch')
    return {'graph_requests_as_throttled': sub_requests + direct, 'batch_envelopes': envelopes,
            'batch_sub_requests': sub_requests, 'direct_graph_requests': direct,
            'http_round_trips': stats['totals']['requests'],
            'sub_requests_by_endpoint': {k: v['requests'] for k, v in stats['batch_items'].items()}}


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--users', type=int, default=1000)
    parser.add_argument('--latency-ms', type=int, default=20)
    parser.add_argument('--output', type=Path, default=DEFAULT_OUTPUT)
    options = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix='bench-hunt-'))
    with Sandbox(state_dir=work / 'sandbox', tenant_size=options.users) as sandbox:
        store = sandbox.ctx.store
        generated = [m for m in store.mailboxes() if m.upn.startswith(('user', 'shared')) and m.mail_enabled]
        planted = plant_rules(store, generated, benign_share=0.5, malicious_share=0.02)
        instance = Instance(sandbox, work / 'instance')
        sandbox.set_latency(options.latency_ms)
        sandbox.set_concurrency(batch_item_latency_ms=options.latency_ms)
        if instance.run('msgraph-mail-get-settings', user_id='soc@contoso.com').returncode:  # token cached, as in use
            print('warm-up failed', file=sys.stderr)
            return 1
        sandbox.reset_stats()
        sandbox.set_concurrency(reset_counters=True)
        started = time.monotonic()
        run = instance.run('msgraph-mail-hunt-rules', all_mailboxes='true', timeout=1800)
        wall = time.monotonic() - started
        if run.returncode != 0:
            print(run.stderr[-3000:], file=sys.stderr)
            return 1
        hunt = context_value(run.entries[0], 'MSGraphMail.RuleHunt')
        counts = graph_counts(sandbox.stats())
        concurrency = sandbox.concurrency()
    found = {f['Mailbox'] for f in hunt['Findings'] if HUNT_DROP in f['ForwardsTo']}
    shared = next((s for s in hunt['SharedForwardingAddresses'] if s['Address'] == HUNT_DROP), {})
    missed = sorted(set(planted['malicious']) - found)
    figures = {
        'accounts': hunt['MailboxesTotal'], 'mailboxes_searched': hunt['MailboxesSearched'],
        'without_mailbox': hunt['MailboxesWithoutMailbox'], 'failed': hunt['MailboxesFailedCount'],
        'rules_checked': hunt['RulesChecked'], 'findings': hunt['FindingsCount'],
        'planted_malicious': len(planted['malicious']), 'planted_found': len(found), 'planted_missed': missed,
        'shared_address_mailboxes': shared.get('MailboxCount', 0), 'latency_ms': options.latency_ms,
        'wall_seconds': round(wall, 2),
        'floor_seconds': round(counts['graph_requests_as_throttled'] * options.latency_ms / 1000 / 4, 2), **counts,
        'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        'graph_requests_per_mailbox': round(counts['graph_requests_as_throttled'] / max(1, hunt['MailboxesTotal']), 3),
        'peak_in_flight': concurrency.get('peak'), 'rejected_by_concurrency_limit': concurrency.get('rejected'),
    }
    print(f"hunt-rules over {figures['accounts']} accounts ({figures['mailboxes_searched']} mailboxes, "
          f"{figures['without_mailbox']} without one), {options.latency_ms} ms latency")
    figures['vs_floor'] = round(figures['wall_seconds'] / figures['floor_seconds'], 2) if figures['floor_seconds'] else None
    for key in ('wall_seconds', 'floor_seconds', 'vs_floor', 'peak_rss_mb', 'graph_requests_as_throttled', 'graph_requests_per_mailbox', 'batch_envelopes',
                'batch_sub_requests', 'direct_graph_requests', 'http_round_trips', 'rules_checked', 'findings',
                'planted_malicious', 'planted_found', 'shared_address_mailboxes', 'peak_in_flight',
                'rejected_by_concurrency_limit'):
        print(f'  {key:32} {figures[key]}')
    for key, value in sorted(counts['sub_requests_by_endpoint'].items()):
        print(f'    {key:70} {value}')
    options.output.write_text(json.dumps(figures, indent=2) + '\n')
    return 1 if missed else 0


if __name__ == '__main__':
    sys.exit(main())
