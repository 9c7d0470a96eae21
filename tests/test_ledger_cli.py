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
reward: {type: amount_off, scope: per_order, amount: "300"}
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
