"""`promo ledger init|show` and `promo codes generate`: codes are written once to a private file and the
ledger keeps only their hashes."""
from __future__ import annotations

import stat

from engine.cli import main
from engine.ledger.codes import code_hash
from engine.ledger.store import codes, make_engine, reading

RULE = """id: spring-pool
name: Spring ¥300 off
status: active
currency: JPY
code_pool: true
targets: {include: all}
benefits: [{type: amount_off, scope: per_order, amount: "300"}]
stacking: {priority: 10, exclusive: false}
limits: {total_uses: 1000}
"""


def test_init_generate_and_show(tmp_path, capsys):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "_settings.yaml").write_text("currencies: [JPY]\n")
    (tmp_path / "rules" / "spring-pool.yaml").write_text(RULE)
    db, out = str(tmp_path / "ledger.db"), tmp_path / "codes.txt"
    rules = ["--rules", str(tmp_path / "rules")]
    assert main(["ledger", "init", "--db", db]) == 0
    assert main(["codes", "generate", "--db", db, "--promotion", "spring-pool", "--count", "20", "--prefix", "SP",
                 "--out", str(out), *rules]) == 0
    plain = out.read_text().split()
    assert len(plain) == 20 and stat.S_IMODE(out.stat().st_mode) == 0o600
    engine = make_engine(db)
    with reading(engine) as conn:
        stored = {row.code_hash for row in conn.execute(codes.select())}
    engine.dispose()
    assert stored == {code_hash(c) for c in plain}
    assert main(["codes", "generate", "--db", db, "--promotion", "spring-pool", "--count", "1", "--out", str(out),
                 *rules]) == 1                                        # never overwrites the only copy
    assert main(["codes", "generate", "--db", db, "--promotion", "nope", "--count", "1",
                 "--out", str(tmp_path / "x.txt"), *rules]) == 1
    assert not (tmp_path / "x.txt").exists()
    capsys.readouterr()
    assert main(["ledger", "show", "--db", db, "--promotion", "spring-pool", *rules]) == 0
    assert "20 unused, 0 held, 0 redeemed" in capsys.readouterr().out


# --- hostile invocations: one plain line, exit 1 (or 2 for a malformed argument), nothing created ----------

import sqlite3  # noqa: E402

import pytest  # noqa: E402

from engine.ledger.errors import LedgerReason  # noqa: E402


@pytest.fixture
def place(tmp_path, monkeypatch):
    """An initialised ledger (ledger.db), a rule set with the pool promotion, and some wrong files."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "_settings.yaml").write_text("currencies: [JPY]\n")
    (tmp_path / "rules" / "spring-pool.yaml").write_text(RULE)
    monkeypatch.chdir(tmp_path)
    assert main(["ledger", "init", "--db", "ledger.db"]) == 0
    (tmp_path / "adir").mkdir()
    (tmp_path / "notes.txt").write_text("not a database\n")
    (tmp_path / "zero.db").write_bytes(b"")
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("create table unrelated (x)")
    other.commit()
    other.close()
    (tmp_path / "taken.txt").write_text("earlier codes\n")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "nowhere")
    return tmp_path


def _snapshot(root):
    """Every file's bytes, except the databases SQLite itself opens: ledger.db (its WAL files change as it is
    read), and other.db, whose header the ledger's engine turns to WAL mode on connecting (store.py); for
    that one the tables are compared."""
    files = {p.relative_to(root): (p.is_symlink(), p.read_bytes() if p.is_file() and not p.is_symlink() else None)
             for p in root.rglob("*") if "-wal" not in p.name and "-shm" not in p.name
             and p.name not in ("ledger.db", "other.db")}
    other = sqlite3.connect(root / "other.db")
    tables = other.execute("select name from sqlite_master order by name").fetchall()
    other.close()
    return files, tables


SHOW = ["ledger", "show", "--rules", "rules", "--promotion", "spring-pool", "--db"]
GEN = ["codes", "generate", "--rules", "rules", "--promotion", "spring-pool"]
LEDGER_HOSTILE = [
    ("show a missing ledger", [*SHOW, "missing.db"], 1, ["no ledger at missing.db", "promo ledger init --db missing.db"]),
    ("show a ledger in a missing directory", [*SHOW, "nodir/l.db"], 1, ["no ledger at nodir/l.db"]),
    ("show a directory", [*SHOW, "adir"], 1, ["no ledger at adir", "directory"]),
    ("show an empty file", [*SHOW, "zero.db"], 1, ["no ledger at zero.db", "promo ledger init"]),
    ("show a text file", [*SHOW, "notes.txt"], 1, ["notes.txt", "not a ledger database"]),
    ("show a database without the tables", [*SHOW, "other.db"], 1, ["other.db", "promo ledger init --db other.db"]),
    ("show an unknown promotion", ["ledger", "show", "--rules", "rules", "--promotion", "nope", "--db", "ledger.db"],
     1, ["'nope'", "rules"]),
    ("show with a broken rule set", ["ledger", "show", "--rules", "adir", "--promotion", "x", "--db", "ledger.db"],
     1, ["_settings.yaml"]),
    ("show another database kind", [*SHOW, "mysql://u:hunter22@h/x"], 1, ["--db", "mysql://h/x"]),
    ("init a directory", ["ledger", "init", "--db", "adir"], 1, ["--db adir", "directory"]),
    ("init in a missing directory", ["ledger", "init", "--db", "nodir/l.db"], 1, ["nodir", "does not exist"]),
    ("init a text file", ["ledger", "init", "--db", "notes.txt"], 1, ["notes.txt", "not a ledger database"]),
    ("count is negative", [*GEN, "--db", "ledger.db", "--count", "-5", "--out", "a.txt"], 2, ["--count", "'-5'"]),
    ("count is too large", [*GEN, "--db", "ledger.db", "--count", "99999999999", "--out", "a.txt"], 2, ["--count"]),
    ("count is not a number", [*GEN, "--db", "ledger.db", "--count", "ten", "--out", "a.txt"], 2, ["--count", "'ten'"]),
    ("prefix has a space", [*GEN, "--db", "ledger.db", "--count", "1", "--prefix", "a b", "--out", "a.txt"], 2,
     ["--prefix", "'a b'"]),
    ("out is in a missing directory", [*GEN, "--db", "ledger.db", "--count", "1", "--out", "nodir/a.txt"], 1,
     ["--out nodir/a.txt", "does not exist"]),
    ("out is an existing file", [*GEN, "--db", "ledger.db", "--count", "1", "--out", "taken.txt"], 1,
     ["--out taken.txt", "exists"]),
    ("out is a dangling link", [*GEN, "--db", "ledger.db", "--count", "1", "--out", "dangling.txt"], 1,
     ["--out dangling.txt", "exists"]),
    ("out is a directory", [*GEN, "--db", "ledger.db", "--count", "1", "--out", "adir"], 1, ["--out adir", "exists"]),
    ("generate into a missing ledger", [*GEN, "--db", "missing.db", "--count", "1", "--out", "a.txt"], 1,
     ["no ledger at missing.db"]),
    ("generate for a promotion without a pool", ["codes", "generate", "--rules", "rules", "--promotion", "nope",
                                                 "--db", "ledger.db", "--count", "1"], 1, ["'nope'", "code_pool"]),
]


@pytest.mark.parametrize("argv,code,names", [c[1:] for c in LEDGER_HOSTILE], ids=[c[0] for c in LEDGER_HOSTILE])
def test_a_hostile_ledger_invocation_gets_one_plain_message(place, capsys, argv, code, names):
    before = _snapshot(place)
    assert main(argv) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Error" not in err and 0 < len(err.strip().splitlines()) <= 4, err
    for name in names:
        assert name in err, err
    assert "hunter22" not in err and out == ""
    assert _snapshot(place) == before          # no database, code file or directory created or changed
    assert not (place / "missing.db").exists() and not (place / "a.txt").exists()


def test_an_unreachable_postgresql_ledger_is_named_without_its_password(tmp_path, capsys):
    (tmp_path / "_settings.yaml").write_text("currencies: [JPY]\n")
    url = "postgresql://bob:hunter22@127.0.0.1:1/ledger"
    for argv in (["ledger", "init", "--db", url], ["ledger", "show", "--db", url, "--promotion", "x",
                                                    "--rules", str(tmp_path)]):
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert err.startswith("promo: cannot use the ledger at postgresql://127.0.0.1:1/ledger") and out == ""
        assert "hunter22" not in err and "bob" not in err and len(err.splitlines()) == 1


def test_a_ledger_refusal_is_printed_as_its_message(place, capsys, monkeypatch):
    import engine.ledger.cli as ledger_cli
    from engine.ledger.errors import LedgerError

    def refuse(*_args, **_kwargs):
        raise LedgerError(LedgerReason.BUSY)
    monkeypatch.setattr(ledger_cli, "Ledger", refuse)
    assert main([*SHOW, "ledger.db"]) == 1
    assert capsys.readouterr().err == "promo: The ledger's database stayed busy through every retry; nothing was " \
                                      "changed. Try again.\n"
