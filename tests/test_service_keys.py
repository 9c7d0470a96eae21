"""API keys (engine/service/keys.py) and `promo keys`: a key is shown once, only its hash is stored,
and a presented key is matched against the hashes."""
from __future__ import annotations

import json
import stat

import pytest

from engine.cli import main
from engine.service.keys import KeyFileError, Scope, create_key, key_hash, read_keys, revoke_key


def test_a_key_is_printed_once_and_only_its_hash_is_kept(tmp_path, capsys):
    path = tmp_path / "keys.json"
    assert main(["keys", "create", "--file", str(path), "--name", "web", "--scope", "checkout"]) == 0
    key = capsys.readouterr().out.strip()
    stored = path.read_text()
    assert key.startswith("pe_") and len(key) > 40
    assert key not in stored
    assert json.loads(stored)["keys"][0]["sha256"] == key_hash(key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_presented_key_finds_its_entry_and_scope(tmp_path):
    path = tmp_path / "keys.json"
    checkout = create_key(path, "web", Scope.CHECKOUT)
    admin = create_key(path, "ops", Scope.ADMIN)
    ring = read_keys(path)
    assert ring.find(checkout).name == "web"
    assert ring.find(admin).allows(Scope.CHECKOUT) and not ring.find(checkout).allows(Scope.ADMIN)
    assert ring.find(checkout[:-1]) is None and ring.find("") is None


def test_a_revoked_key_is_not_found_and_its_name_is_not_reused(tmp_path):
    path = tmp_path / "keys.json"
    key = create_key(path, "web", Scope.CHECKOUT)
    revoke_key(path, "web")
    assert read_keys(path).find(key) is None
    with pytest.raises(KeyFileError, match="already has a key named 'web'"):
        create_key(path, "web", Scope.CHECKOUT)


@pytest.mark.parametrize("content, message", [
    (b"not json", "is not JSON"),
    (b'{"keys": [{"name": "web"}]}', "keys[0] needs exactly"),
    (b'{"keys": [{"name": "web", "scope": "root", "sha256": "' + b"0" * 64 + b'", "created_at": "x"}]}',
     "scope that is not one of checkout, admin"),
    (b'{"other": []}', "is not a key file"),
])
def test_a_malformed_key_file_is_named(tmp_path, content, message):
    path = tmp_path / "keys.json"
    path.write_bytes(content)
    with pytest.raises(KeyFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_keys(path)


def test_keys_list_shows_names_and_scopes_never_hashes(tmp_path, capsys):
    path = tmp_path / "keys.json"
    create_key(path, "web", Scope.CHECKOUT)
    revoke_key(path, "web")
    create_key(path, "ops", Scope.ADMIN)
    capsys.readouterr()
    assert main(["keys", "list", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "web\tcheckout" in out and "revoked" in out and "ops\tadmin" in out
    assert read_keys(path).keys[0].sha256 not in out
