"""CLI: ``python -m sandbox --port 0 --state-dir DIR [--latency-ms N] [--cloud usgov|china]``.

Prints exactly one line, ``READY https://127.0.0.1:PORT``, once listening (after
``DIR/sandbox.json`` is written), then serves until SIGTERM or SIGINT.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from .app import Sandbox
from .clouds import PROFILES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox",
                                     description="Local HTTPS emulator of Entra ID + Microsoft Graph mail.")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = ephemeral)")
    parser.add_argument("--state-dir", default=".sandbox",
                        help="where ca.pem, keys and sandbox.json are written (default: .sandbox)")
    parser.add_argument("--latency-ms", type=int, default=0, help="delay added before every response")
    parser.add_argument("--token-lifetime", type=int, default=3599, help="access token lifetime in seconds")
    parser.add_argument("--no-delta", action="store_true",
                        help="emulate a cloud without message delta (e.g. 21Vianet)")
    parser.add_argument("--cloud", choices=sorted(PROFILES), default="worldwide",
                        help="emulate a national cloud's Graph: what it lacks is refused (default: worldwide)")
    parser.add_argument("--tenant-size", type=int, default=0,
                        help="add a generated tenant of N users (mailboxes, shared mailboxes, users without one, groups)")
    parser.add_argument("--batch-item-latency-ms", type=int, default=0,
                        help="time each $batch sub-request takes (Outlook runs 4 sub-requests of a batch at once)")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    sandbox = Sandbox(args.state_dir, port=args.port, latency_ms=args.latency_ms,
                      token_lifetime=args.token_lifetime, delta_supported=not args.no_delta,
                      cloud=args.cloud, verbose=args.verbose, tenant_size=args.tenant_size).start()
    sandbox.set_concurrency(batch_item_latency_ms=args.batch_item_latency_ms)
    try:
        print(f"READY {sandbox.base_url}", flush=True)
        stop.wait()
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
