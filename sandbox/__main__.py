"""CLI: ``python3 -m sandbox [--port 0] [--state-dir .sandbox] [--latency-ms N] [--cloud usgov|china]``.

Prints exactly one line on stdout, ``READY https://127.0.0.1:PORT``, once listening (after ``DIR/sandbox.json``
and ``DIR/params.json`` are written); how to use the sandbox goes to stderr. Serves until SIGTERM or SIGINT.
Started with a Python that lacks the sandbox's packages, it re-runs itself with the project's ``.venv``
(created on first use).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FETCH_MAILBOX = "soc@contoso.com"
FETCH_FOLDER = "Inbox/Phishing"


def ensure_project_python() -> None:
    helper = ROOT / "scripts" / "project_python.py"
    spec = importlib.util.spec_from_file_location("mgm_project_python", helper)
    if spec is None or spec.loader is None or not helper.is_file():
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.ensure_project_python(__file__, ("cryptography", "jwt"), command=["-m", "sandbox"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from .clouds import PROFILES

    parser = argparse.ArgumentParser(prog="python3 -m sandbox",
                                     description="Local HTTPS emulator of Entra ID + Microsoft Graph mail.")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = ephemeral)")
    parser.add_argument("--state-dir", default=".sandbox",
                        help="where ca.pem, keys, sandbox.json and params.json are written (default: .sandbox)")
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


def ready_params(info: dict) -> dict:
    """Instance parameters (yml names) for the integration's shell runner: a self-deployed app with a client
    secret, fetching from soc@contoso.com Inbox/Phishing. The values are the sandbox's fake credentials, so they
    sit in the file as they are. `_ca_bundle` is read by the runner (demistomock), never by the integration: it
    makes the runner trust the sandbox's certificate authority."""
    return {
        "url": info["base_url"], "azure_ad_endpoint": info["base_url"], "timeout": "30",
        "self_deployed": True,
        "creds_auth_id": {"password": info["client_id"]},
        "creds_tenant_id": {"password": info["tenant_id"]},
        "credentials": {"password": info["client_secret"]},
        "isFetch": True, "mailbox_to_fetch": FETCH_MAILBOX, "folder_to_fetch": FETCH_FOLDER, "first_fetch": "30 days",
        "_ca_bundle": os.path.abspath(info["ca_path"]),
    }


def write_params_file(state_dir: Path, info: dict) -> Path:
    path = state_dir / "params.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(ready_params(info), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def shown_path(path: Path) -> str:
    """The path as the user can type it from the current folder."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:
        return str(path)


def usage_lines(params_path: Path, info: dict) -> list[str]:
    params = shown_path(params_path)
    return [
        f"Instance parameters: {params} (client secret; fetch mailbox {FETCH_MAILBOX}, folder {FETCH_FOLDER}).",
        "  The shell runner trusts the sandbox's certificate authority because the file names it (_ca_bundle).",
        f"  Other HTTPS clients: export REQUESTS_CA_BUNDLE={os.path.abspath(info['ca_path'])}",
        f"Try:  python3 MicrosoftGraphMail.py test-module --params {params}",
        "Stop with Ctrl-C.",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from .app import Sandbox

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    sandbox = Sandbox(args.state_dir, port=args.port, latency_ms=args.latency_ms,
                      token_lifetime=args.token_lifetime, delta_supported=not args.no_delta,
                      cloud=args.cloud, verbose=args.verbose, tenant_size=args.tenant_size).start()
    sandbox.set_concurrency(batch_item_latency_ms=args.batch_item_latency_ms)
    try:
        params_path = write_params_file(Path(args.state_dir), sandbox.info)
        print(f"READY {sandbox.base_url}", flush=True)
        print("\n".join(usage_lines(params_path, sandbox.info)), file=sys.stderr, flush=True)
        stop.wait()
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    ensure_project_python()
    sys.exit(main())
