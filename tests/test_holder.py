"""Reloading swaps the whole rule set at once: readers in other threads see the old one or the new
one, never a mixture, and a broken reload leaves the current one in place."""
from __future__ import annotations

import threading

import pytest

from engine import RuleFileError, RuleSetHolder, evaluate

NOW = "2026-11-21T10:00:00+09:00"
ACCOUNT = {"id": "a", "region": "JP", "tier": "standard", "order_count": 1, "time_zone": "Asia/Tokyo"}
CART = {"currency": "JPY", "channel": "web", "lines": [{"id": "L1", "sku": "S1", "category": "a",
        "seller": "first_party", "product_type": "physical", "unit_price": "1000", "quantity": 1}]}


def write_version(folder, version: int, count: int = 12):
    """`count` promotions all named for `version`, each taking `version` yen off: a mixture would show."""
    folder.mkdir()
    (folder / "_settings.yaml").write_text("currencies: [JPY]\n")
    for i in range(count):
        (folder / f"v{version}-{i:02d}.yaml").write_text(
            f"id: v{version}-{i:02d}\nname: v{version}\nstatus: active\ncurrency: JPY\n"
            f"targets: {{include: all}}\nbenefits: [{{type: amount_off, scope: per_line, amount: \"{version}\"}}]\n"
            f"stacking: {{priority: 1, exclusive: false}}\n")
    return folder


def test_readers_see_one_whole_rule_set_while_another_thread_reloads(tmp_path):
    one, two = write_version(tmp_path / "one", 1), write_version(tmp_path / "two", 2)
    holder = RuleSetHolder(one)
    expected = {holder.current.version: 1}
    expected[holder.reload(two).version] = 2
    holder.reload(one)
    stop = threading.Event()
    seen: list[tuple[str, set[str], str]] = []

    def read() -> None:
        while not stop.is_set():
            rules = holder.current
            trace = evaluate(rules, CART, ACCOUNT, now=NOW)
            seen.append((rules.version, {a.name for a in trace.applied}, trace.ruleset_version))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    for i in range(6):
        holder.reload(two if i % 2 == 0 else one)
    stop.set()
    for t in readers:
        t.join()
    assert seen
    for version, names, traced in seen:
        assert traced == version
        assert names == {f"v{expected[version]}"}


def test_a_broken_reload_keeps_the_current_rule_set(tmp_path):
    good = write_version(tmp_path / "good", 1, count=2)
    holder = RuleSetHolder(good)
    before = holder.current
    (good / "v1-00.yaml").write_text("id: [\n")
    with pytest.raises(RuleFileError):
        holder.reload()
    assert holder.current is before


def test_a_loaded_rule_set_is_moved_out_of_the_collectors_scans_and_a_replaced_one_is_still_freed(tmp_path):
    import gc
    import weakref
    one, two = write_version(tmp_path / "one", 1), write_version(tmp_path / "two", 2)
    frozen_before = gc.get_freeze_count()
    try:
        holder = RuleSetHolder(one)
        assert gc.get_freeze_count() > frozen_before
        old = weakref.ref(holder.current)
        holder.reload(two)
        assert old() is None   # frozen, yet freed by reference counting: a rule set has no cycles
        left_alone = RuleSetHolder(two, exempt_from_gc=False)
        gc.unfreeze()
        left_alone.reload(one)
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
