"""Editing rule files: every bundled rule file names its schema in a yaml-language-server modeline, the
loader reads such a file like any other, and Red Hat's yaml-language-server (what VS Code's YAML
extension, Neovim, Helix and Emacs run) finds a marketer's mistakes from the schema alone.

The language-server test installs yaml-language-server (pinned) from the npm registry into
.cache/yaml-language-server (git-ignored) once and reuses it while the version matches, then speaks the
language-server protocol to it over stdin/stdout (Content-Length framing, standard library only). Every
wait has a deadline, so it can never hang CI. Without Node.js, npm or the registry it FAILS, saying
what is missing: editor support that is never checked is editor support that silently breaks."""
from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from engine.ruleset import load_ruleset

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
SERVER_VERSION = "1.25.0"   # runs on Node.js 20; 2.x needs Node.js 22.13
CACHE = ROOT / ".cache" / "yaml-language-server"
INSTALL_SECONDS = 180
ANSWER_SECONDS = 30


def modeline(path: Path) -> str:
    schema = "ruleset" if path.name == "_settings.yaml" else "promotion"
    return f"# yaml-language-server: $schema=../schemas/{schema}.schema.json"


def test_every_bundled_rule_file_starts_with_its_schema_modeline() -> None:
    files = sorted(RULES.glob("*.yaml"))
    assert len(files) > 10
    for path in files:
        assert path.read_text("utf-8").splitlines()[0] == modeline(path), path.name
        target = (path.parent / modeline(path).split("=", 1)[1]).resolve()
        assert target.is_file(), f"{path.name}: the modeline names {target}, which does not exist"


def test_a_rule_file_with_the_modeline_loads_and_the_id_check_still_holds(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    assert "toys-200-off-each" in load_ruleset(rules).promotions
    (rules / "toys-200-off-each.yaml").rename(rules / "toys-renamed.yaml")
    with pytest.raises(Exception) as refused:
        load_ruleset(rules)
    assert "toys-renamed" in str(refused.value) and "toys-200-off-each" in str(refused.value)


# --- yaml-language-server over the language-server protocol -----------------------------------------

# A rule file with five mistakes, each on its own line. Line numbers below are 0-based, as in the protocol.
MISTAKES = """\
# yaml-language-server: $schema=../schemas/promotion.schema.json
id: five-mistakes
name: Five mistakes
status: live
currency: JPY
eligibility:
  all:
    - name: eligible_subtotal
      operator: at_least
      value: "3000"
targets:
  include: all
benefits:
  - type: percent_off
    percent: 10
limits:
  max_discount: 2000
  budgett: "500000"
"""
EXPECTED = [   # (line, words the message must hold); a missing key is reported at the first key of its mapping
    (1, ('Missing property "stacking"',)),                                   # a required field left out
    (3, ("Value is not accepted", '"draft"', '"active"', '"paused"')),        # status: live
    (8, ("Value is not accepted", '"greater_than_or_equal_to"')),             # operator: at_least
    (16, ('Incorrect type. Expected "string"',)),                            # max_discount: 2000 (a bare number)
    (17, ("Property budgett is not allowed",)),                              # an unknown key
]


def _install() -> Path:
    """The server's entry point, installed into CACHE unless the pinned version is already there."""
    main = CACHE / "node_modules" / "yaml-language-server"
    entry = main / "bin" / "yaml-language-server"
    try:
        installed = json.loads((main / "package.json").read_text("utf-8")).get("version")
    except (OSError, ValueError):
        installed = None
    if installed == SERVER_VERSION and entry.is_file():
        return entry
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.fail("the editor test needs Node.js (20 or later) and npm on PATH, to install yaml-language-server")
    CACHE.mkdir(parents=True, exist_ok=True)
    command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(CACHE),
               f"yaml-language-server@{SERVER_VERSION}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"npm could not install yaml-language-server@{SERVER_VERSION} within {INSTALL_SECONDS} s: "
                    f"is the npm registry reachable? ({' '.join(command)})")
    if done.returncode != 0 or not entry.is_file():
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        pytest.fail(f"npm could not install yaml-language-server@{SERVER_VERSION} (is the npm registry "
                    f"reachable?): exit {done.returncode}\n{tail}")
    return entry


class Client:
    """A language-server client: JSON-RPC messages framed by Content-Length headers over a pipe."""

    def __init__(self, entry: Path):
        self.process = subprocess.Popen(["node", str(entry), "--stdio"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.messages: queue.Queue = queue.Queue()
        self.next_id = 0
        self.stderr: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True).start()

    def _read(self) -> None:
        out = self.process.stdout
        while True:
            length = None
            while True:   # headers, up to the empty line
                line = out.readline()
                if not line:
                    self.messages.put(None)
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            body = out.read(length or 0)
            self.messages.put(json.loads(body))

    def send(self, message: dict) -> None:
        body = json.dumps(dict(message, jsonrpc="2.0")).encode("utf-8")
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def notify(self, method: str, params: Any) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: Any) -> int:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        return self.next_id

    def wait_for(self, wanted, seconds: float) -> dict:
        """The first message `wanted` accepts; requests from the server are answered with null meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            try:
                message = self.messages.get(timeout=max(left, 0.01)) if left > 0 else None
            except queue.Empty:
                message = None
            if message is None:
                said = b"".join(self.stderr).decode("utf-8", "replace")[-2000:]
                pytest.fail(f"yaml-language-server gave no such answer within {seconds} s "
                            f"(exit code {self.process.poll()}); stderr: {said}")
            if "method" in message and "id" in message:   # a request to the client
                self.send({"id": message["id"], "result": None})
            if wanted(message):
                return message

    def close(self) -> None:
        try:
            self.wait_for(lambda m: m.get("id") == self.request("shutdown", None), 5)
            self.notify("exit", None)
            self.process.wait(timeout=5)
        except BaseException:  # noqa: BLE001 - whatever went wrong, the server does not outlive the test
            pass
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=5)


def test_yaml_language_server_reports_five_mistakes_from_the_schema(tmp_path: Path) -> None:
    entry = _install()
    # The rule file sits in rules/ beside a schemas/ directory, as in a clone, so its modeline resolves.
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    (tmp_path / "rules").mkdir()
    path = tmp_path / "rules" / "five-mistakes.yaml"
    path.write_text(MISTAKES, "utf-8")
    settings = {"yaml": {"validate": True, "yamlVersion": "1.1", "hover": True, "completion": True,
                         "schemaStore": {"enable": False}}}
    client = Client(entry)
    try:
        asked = client.request("initialize", {"processId": None, "rootUri": tmp_path.as_uri(),
                                              "capabilities": {"textDocument": {"publishDiagnostics": {}}},
                                              "initializationOptions": settings})
        client.wait_for(lambda m: m.get("id") == asked, ANSWER_SECONDS)
        client.notify("initialized", {})
        client.notify("workspace/didChangeConfiguration", {"settings": settings})
        client.notify("textDocument/didOpen", {"textDocument": {"uri": path.as_uri(), "languageId": "yaml",
                                                                "version": 1, "text": MISTAKES}})
        published = client.wait_for(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                                    and m["params"]["uri"] == path.as_uri() and m["params"]["diagnostics"],
                                    ANSWER_SECONDS)
    finally:
        client.close()
    found = sorted((d["range"]["start"]["line"], d["message"]) for d in published["params"]["diagnostics"])
    assert len(found) == len(EXPECTED), found
    for (line, message), (want_line, words) in zip(found, EXPECTED):
        assert line == want_line and all(w in message for w in words), (line, message, found)
