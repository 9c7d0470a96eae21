"""`promo serve` and `promo keys create|revoke|list`: the service's command-line edge.

`promo serve` checks everything it needs before it listens: the key file (it must hold at least one
live key: a service without keys refuses to start), the rules, the ledger. Each failure is one line
naming what to fix, never a traceback. It listens on the loopback address unless told otherwise.
With `--workers N` above 1, uvicorn starts N processes, each building the application from the same
settings (passed in PROMO_SERVE_SETTINGS). Before they start, `promo serve` makes a private directory
(shared.py `Workers`) where the rule set is published to all of them (a reload answered by one worker
reaches every worker) and where prometheus_client's multiprocess mode keeps every worker's counts (so
/metrics adds them up); it removes the directory when it exits.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

from ..errors import PromoError
from ..ledger import LedgerError
from ..render import clean_lines
from .keys import KeyFileError, Scope, create_key, read_keys, revoke_key
from .shared import Workers
from .state import Settings

SETTINGS_VARIABLE = "PROMO_SERVE_SETTINGS"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def add_commands(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run promo-engine as an HTTP service (see /openapi.json)")
    serve.add_argument("--rules", default="rules", help="rule directory (default: rules)")
    serve.add_argument("--ledger", help="the ledger database: a SQLite file or postgresql://… (after promo ledger init)")
    serve.add_argument("--keys", help="the API key file (promo keys create); required")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=_port, default=8080, help="port (default: 8080)")
    serve.add_argument("--workers", type=_workers, default=1,
                       help="worker processes (default: 1). Above 1, POST /v1/admin/reload is answered by one "
                            "worker, which publishes the rule set it loaded to all of them: every worker prices "
                            "each request it starts after the answer with that version. /metrics adds up the "
                            "counts of every worker (prometheus_client's multiprocess mode, in a private "
                            "directory removed at exit)")
    serve.add_argument("--timeout", type=_timeout, default=10.0, help="seconds a request may take (default: 10)")
    examples = serve.add_mutually_exclusive_group()
    examples.add_argument("--examples", metavar="DIR",
                       help="example cases for the preview page (/preview): one sub-directory each with cart.json, "
                            "account.json and case.json (default: examples/ beside the rules directory, when "
                            "there is one)")
    examples.add_argument("--no-examples", action="store_true", help="offer the preview page no example cases")

    keys = commands.add_parser("keys", help="API keys for promo serve")
    verbs = keys.add_subparsers(dest="keys_command", required=True)
    create = verbs.add_parser("create", help="add a key; it is printed once and only its hash is kept")
    create.add_argument("--file", required=True, help="the key file (created when missing; it keeps only hashes)")
    create.add_argument("--name", required=True, help="a name for the key, to list and revoke it by")
    create.add_argument("--scope", required=True, choices=[s.value for s in Scope],
                        help="what the key may do: " + ", ".join(s.value for s in Scope))
    revoke = verbs.add_parser("revoke", help="revoke a key by name (a running service stops accepting it)")
    revoke.add_argument("--file", required=True, help="the key file")
    revoke.add_argument("--name", required=True, help="the name of the key to revoke")
    listing = verbs.add_parser("list", help="the keys' names, scopes and dates (never the keys)")
    listing.add_argument("--file", required=True, help="the key file")


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "keys":
            return _keys(args)
        return _serve(args)
    except KeyFileError as exc:
        print(f"promo {args.command}: {clean_lines(str(exc))}", file=sys.stderr)
        return 1


def _keys(args: argparse.Namespace) -> int:
    if args.keys_command == "create":
        key = create_key(args.file, args.name, Scope(args.scope))
        print(key)
        print(f"promo keys: key {args.name!r} ({args.scope}) added to {args.file}; it is shown only this once",
              file=sys.stderr)
    elif args.keys_command == "revoke":
        revoke_key(args.file, args.name)
        print(f"promo keys: key {args.name!r} revoked", file=sys.stderr)
    else:
        for k in read_keys(args.file).keys:
            state = f"revoked {k.revoked_at}" if k.revoked_at else "live"
            print(f"{k.name}\t{k.scope.value}\tcreated {k.created_at}\t{state}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    if not args.keys:
        print("promo serve: --keys FILE is required: the service answers only requests with an API key. "
              "Create one with `promo keys create --file keys.json --name checkout-web --scope checkout`",
              file=sys.stderr)
        return 2
    ring = read_keys(args.keys)
    if not any(k.revoked_at is None for k in ring.keys):
        print(f"promo serve: key file {args.keys} has no live key; add one with `promo keys create`", file=sys.stderr)
        return 1
    settings = Settings(rules=args.rules, keys=args.keys, ledger=args.ledger, timeout_seconds=args.timeout,
                        workers=args.workers, examples=_examples(args))
    if args.workers == 1:
        return _started(args, settings)
    with Workers() as shared:
        return _started(args, replace(settings, shared=str(shared.rules), metrics=str(shared.metrics)))


def _started(args: argparse.Namespace, settings: Settings) -> int:
    """Check the settings by building the application, then serve. With several workers, this process
    only checks (and publishes the first rule set); the workers build their own applications."""
    from .app import create_app   # the web stack is imported only when serving
    try:
        app = create_app(replace(settings, metrics=None))   # this process counts nothing
    except (PromoError, LedgerError) as exc:
        print(f"promo serve: not started: {clean_lines(str(exc))}", file=sys.stderr)
        return 1
    if args.host not in LOOPBACK:
        print(f"promo serve: listening on {args.host}, not only on this machine; put TLS in front of it",
              file=sys.stderr)
    configure_logging()
    import uvicorn
    from .wire import PROTOCOL
    options = dict(host=args.host, port=args.port, access_log=False, server_header=False, log_level="info",
                   http=PROTOCOL)
    if settings.workers == 1:
        uvicorn.run(app, **options)
    else:
        os.environ[SETTINGS_VARIABLE] = json.dumps(asdict(settings))
        try:
            uvicorn.run("engine.service.app:from_environment", factory=True, workers=settings.workers, **options)
        finally:
            os.environ.pop(SETTINGS_VARIABLE, None)
    return 0


def _examples(args: argparse.Namespace) -> str | None:
    """The examples directory: --examples DIR, else examples/ beside the rules directory if it exists."""
    if args.no_examples:
        return None
    if args.examples is not None:
        return args.examples
    beside = Path(args.rules).absolute().parent / "examples"
    return str(beside) if beside.is_dir() else None


def configure_logging() -> None:
    """The request log: one JSON line per request on stderr."""
    logger = logging.getLogger("promo.service")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError("a port is 0 to 65535")
    return int(text)


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError("workers is 1 to 64")
    return int(text)


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a timeout is a number of seconds") from None
    if not 0.1 <= value <= 300:
        raise argparse.ArgumentTypeError("a timeout is 0.1 to 300 seconds")
    return value
