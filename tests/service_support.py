"""The real service for the tests: `promo serve` in a subprocess on a free loopback port, with its own
rules directory, key file and (optionally) ledger, and an HTTP client for it."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from engine.service.keys import Scope, create_key

SETTINGS = b"currencies: [JPY, USD]\nrounding: half_up\nlocale: en_US\n"


def _promotion(pid: str, code: str | None, amount: str, limits: str = "", extra: str = "",
               status: str = "active") -> bytes:
    code_line = f"code: {code}\n" if code else ""
    return (f"id: {pid}\nname: {pid} name\nstatus: {status}\ncurrency: JPY\n{code_line}{extra}"
            f"targets: {{include: all}}\nbenefits: [{{type: amount_off, scope: per_order, amount: \"{amount}\"}}]\n"
            f"stacking: {{priority: 10, exclusive: false}}\n" + (f"limits: {limits}\n" if limits else "")).encode()


# No window ends near the real clock: the service's clock is the machine's.
RULES = {
    "_settings.yaml": SETTINGS,
    "welcome-100.yaml": _promotion("welcome-100", "WELCOME", "100", "{uses_per_customer: 1, return_usage_on_cancel: true}"),
    "pool-300.yaml": _promotion("pool-300", None, "300", "{return_usage_on_cancel: true}", "code_pool: true\n"),
    "draft-50.yaml": _promotion("draft-50", "DRAFT", "50", status="draft"),
    "gone-70.yaml": _promotion("gone-70", "GONE", "70", extra="window: {ends: \"2020-01-01T00:00:00+00:00\"}\n"),
    "later-80.yaml": _promotion("later-80", "LATER", "80", extra="window: {starts: \"2199-01-01T00:00:00+00:00\"}\n"),
    "spend-600.yaml": (b"id: spend-600\nname: Spend 5000 get 600 off\nstatus: active\ncurrency: JPY\n"
                       b"eligibility: {all: [{name: cart_subtotal, operator: greater_than_or_equal_to, "
                       b"value: \"5000\"}]}\ntargets: {include: all}\n"
                       b"benefits: [{type: amount_off, scope: per_order, amount: \"600\"}]\n"
                       b"stacking: {priority: 5, exclusive: false}\n"),
}


def cart(price: str = "1000", quantity: int = 3, cart_id: str = "cart-1") -> dict[str, Any]:
    return {"id": cart_id, "currency": "JPY", "channel": "web", "shipping": {"method": "standard", "price": "500"},
            "lines": [{"id": "L1", "sku": "SKU1", "name": "Item 1", "category": "books", "seller": "first_party",
                       "product_type": "physical", "unit_price": price, "quantity": quantity}]}


def account(account_id: str = "acct-1") -> dict[str, Any]:
    return {"id": account_id, "region": "JP", "tier": "standard", "segments": [], "order_count": 3,
            "time_zone": "Asia/Tokyo"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_rules(directory: Path, files: dict[str, bytes] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in (files or RULES).items():
        (directory / name).write_bytes(data)
    return directory


@dataclass
class Server:
    url: str
    rules: Path
    keys: Path
    checkout_key: str
    admin_key: str
    process: subprocess.Popen
    log: Path

    def client(self, key: str | None = "checkout", **options: Any) -> httpx.Client:
        token = {"checkout": self.checkout_key, "admin": self.admin_key}.get(key, key)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **options)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(tmp: Path, ledger: str | None = None, extra_args: tuple[str, ...] = (),
          files: dict[str, bytes] | None = None, env: dict[str, str] | None = None) -> Server:
    rules = write_rules(tmp / "rules", files)
    keys = tmp / "keys.json"
    checkout_key = create_key(keys, "web", Scope.CHECKOUT)
    admin_key = create_key(keys, "ops", Scope.ADMIN)
    port = free_port()
    log = tmp / "serve.log"
    args = [sys.executable, "-m", "engine.cli", "serve", "--rules", str(rules), "--keys", str(keys),
            "--port", str(port), *extra_args] + (["--ledger", ledger] if ledger else [])
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = Server(f"http://127.0.0.1:{port}", rules, keys, checkout_key, admin_key, process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"promo serve exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"promo serve did not answer within 30 s: {log.read_text()}")
