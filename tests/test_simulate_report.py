"""`promo simulate --report FILE.html` (engine/simulate_report.py): one self-contained page whose numbers are
the --json result's, with a burn-down chart for every promotion with a budget. The rule set and corpus are
tests/test_simulate.py's (tight limits, all reached on the way)."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import struct
from decimal import Decimal
from pathlib import Path

import pytest

from engine.cli import main
from engine.simulate_report import DISCOUNT, GRANTED, LINE, SHADE, burn_down_chart, cost_chart

from .test_backtest_report import PNG, Page
from .test_simulate import EXTRA, ROOT, _corpus, _ruleset, _write

SCRIPT = "<script>alert(1)</script>"


class Figures(Page):
    """Page, with each <figure>'s attributes, image and caption."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict] = []
        self._caption: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        super().handle_starttag(tag, attrs)
        if tag == "figure":
            self.figures.append(dict(attrs))
        elif tag == "img" and self.figures:
            self.figures[-1]["img"] = dict(attrs)["src"]
        elif tag == "figcaption":
            self._caption = []

    def handle_endtag(self, tag):
        super().handle_endtag(tag)
        if tag == "figcaption":
            self.figures[-1]["caption"] = "".join(self._caption)
            self._caption = None

    def handle_data(self, data):
        super().handle_data(data)
        if self._caption is not None:
            self._caption.append(data)


def _rules(tmp: Path) -> Path:
    """The bundled rules and tests/test_simulate.py's tight limits, in tmp/rules."""
    rules = tmp / "rules"
    rules.mkdir()
    for p in (ROOT / "rules").iterdir():
        if p.suffix == ".yaml":
            shutil.copy(p, rules / p.name)
    for name, data in EXTRA.items():
        (tmp / name).write_bytes(data)
    return rules


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("simreport")
    rules = _rules(tmp)
    entries = _corpus(["X"] * 6)
    for e in entries:   # every cart id holds markup: the carts that exhaust a limit are named in the page
        object.__setattr__(e, "id", f"{SCRIPT}{e.id}")
    corpus = _write(tmp / "c.jsonl", entries)
    report = tmp / "sim.html"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["simulate", "--rules", str(rules), "--carts", str(corpus), "--per-day", "3", "--seed", "2",
                     "--start", "2026-12-01", "--json", "--report", str(report)]) == 0
    html = report.read_text(encoding="utf-8")
    page = Figures()
    page.feed(html)
    return json.loads(out.getvalue()), page, html, _ruleset(), rules, corpus


def _money(cell: str) -> dict[str, str]:
    return {} if cell == "-" else dict(part.split(" ") for part in cell.split("; "))


def _event(event) -> str:
    if event is None:
        return "-"
    return f"{event['limit'].replace('_', ' ')} on {event['day']} (day {event['day_index'] + 1}) at {event['cart']}"


def test_the_tables_hold_the_json_numbers(run):
    data, page, _, ruleset, rules, corpus = run
    assert dict(page.tables["run"]) == {
        "Rules": str(rules), "Corpus": str(corpus), "Carts a day": "3", "Days": "until the corpus was used up",
        "Start": "2026-12-01", "Seed": "2", "Bad lines": "stop", "Single-use codes": "none",
        "Abandoned checkouts": "none", "Cancelled orders": "none"}
    header, row = page.tables["summary"]
    assert dict(zip(header, row)) == {"Carts": str(data["carts"]), "Days": str(data["days"]),
                                      "Carts a day": "3", "Skipped": "0", "First day": "2026-12-01",
                                      "Last day": data["per_day"][-1]["day"], "Abandoned": "0", "Cancelled": "0",
                                      "Cancellations after the last day": "0"}
    assert data["carts"] == 60 and data["days"] == 20

    header, *rows = page.tables["promotions"]
    assert [r[0] for r in rows] == list(data["by_promotion"])
    for r in rows:
        cell = dict(zip(header, r))
        p = data["by_promotion"][cell["Promotion"]]
        assert (int(cell["Uses"]), _money(cell["Discount"]), _money(cell["Granted"]), int(cell["Refused"])) == \
            (p["uses"], p["discount"], p["granted"], p["refused"]), cell["Promotion"]
        assert cell["Exhausted"] == _event(p["exhausted"]) and cell["First refused"] == _event(p["first_refused"])
        budget = ruleset.promotions[cell["Promotion"]].limits.budget
        if budget is None:
            assert cell["Budget spent"] == cell["Budget left"] == ""
        else:   # what the last day the promotion applied had spent, as --json says
            spent = next((d["by_promotion"][cell["Promotion"]]["budget_spent"] for d in reversed(data["per_day"])
                          if cell["Promotion"] in d["by_promotion"]), "0")
            assert cell["Budget spent"] == f"JPY {spent}"
            assert cell["Budget left"] == f"JPY {budget - Decimal(spent):f}"
    cap = dict(zip(header, next(r for r in rows if r[0] == "budget-cap")))
    assert (cap["Budget spent"], cap["Budget left"], cap["Limits"]) == ("JPY 4000", "JPY 0", "budget JPY 4000 (cap)")
    assert cap["Exhausted"].startswith("budget on ")

    header, *days = page.tables["per-day"]
    assert [(d[0], int(d[1]), _money(d[2]), _money(d[3])) for d in days] == \
        [(d["day"], d["carts"], d["discount"], d["granted"]) for d in data["per_day"]]


def test_a_burn_down_chart_for_each_budget_marks_the_day_it_ran_out(run):
    data, page, _, ruleset, _, _ = run
    budgeted = [pid for pid, p in sorted(ruleset.promotions.items()) if p.limits.budget is not None]
    counted = [pid for pid, p in sorted(ruleset.promotions.items())
               if p.limits.budget is None and p.limits.total_uses is not None]
    assert "budget-cap" in budgeted and "tight-total" in counted
    panels = [f for f in page.figures if "data-promotion" in f]
    assert [f["data-promotion"] for f in panels] == budgeted + counted
    for f in panels:
        pid, exhausted = f["data-promotion"], data["by_promotion"][f["data-promotion"]]["exhausted"]
        image = _png(f["img"])
        width, height = struct.unpack(">II", image[16:24])     # the IHDR chunk
        assert (width, height) == (520, 290), pid
        assert f["data-ran-out"] == (exhausted["day"] if exhausted else ""), pid
        if exhausted:
            assert f"ran out ({exhausted['limit'].replace('_', ' ')}) on {exhausted['day']}" in f["caption"]
        else:
            assert "never ran out" in f["caption"]
    ran_out = {f["data-promotion"]: f["data-ran-out"] for f in panels}
    assert ran_out["budget-cap"] == data["by_promotion"]["budget-cap"]["exhausted"]["day"] != ""
    assert ran_out["tight-total"] == data["by_promotion"]["tight-total"]["exhausted"]["day"] != ""
    # and a cost chart per currency
    assert [f.get("data-currency") for f in page.figures if "data-currency" in f] == ["JPY"]


def test_ids_from_files_are_escaped_and_nothing_is_fetched(run):
    data, page, html, *_ = run
    exhausted = data["by_promotion"]["budget-cap"]["exhausted"]["cart"]
    assert exhausted.startswith(SCRIPT)
    assert "<script" not in html.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "script" not in page.tags and "link" not in page.tags and not page.links
    assert any(exhausted in cell for r in page.tables["promotions"] for cell in r)   # shown, as text
    assert "http://" not in html and "https://" not in html and "url(" not in html and "@import" not in html
    assert all(src.startswith("data:image/png;base64,") for src in page.images)


def _png(src: str) -> bytes:
    head, _, payload = src.partition(",")
    assert head == "data:image/png;base64"
    data = base64.b64decode(payload, validate=True)
    assert data.startswith(PNG)
    return data


def _pixels(png: bytes, colour: str):
    """The (row, column) of every pixel of `colour` (#rrggbb), give or take antialiasing."""
    import numpy
    from matplotlib.image import imread
    image = imread(io.BytesIO(png), format="png")[:, :, :3]
    want = numpy.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    rows, columns = numpy.nonzero((abs(image - want) < 0.02).all(axis=2))
    return rows, columns


def test_the_burn_down_line_falls_by_what_each_day_spent_and_the_shade_is_on_the_day_it_ran_out():
    png = burn_down_chart("p", ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"], 1000.0,
                          [750.0, 500.0, 0.0, 0.0], "JPY", ran_out=2)
    rows, columns = _pixels(png, LINE)
    left, right = columns.min(), columns.max()      # x = 0 (the start) to 4 (the end of the last day)
    day = (right - left) / 4

    def level(k: int) -> float:   # the line's row in the middle of day k
        middle = left + (k + 0.5) * day
        return float(rows[abs(columns - middle) < day / 4].mean())

    assert level(0) < level(1) < level(2) == level(3)          # down the page as the budget goes
    assert abs((level(2) - level(1)) - 2 * (level(1) - level(0))) < 3   # 500 spent on day 3, 250 on day 2
    assert rows.min() < level(0) - 0.2 * (level(2) - level(0))     # it starts from the full budget, above
    _, shaded = _pixels(png, SHADE)
    assert len(shaded) and left + 2 * day - 2 <= shaded.min() and shaded.max() <= left + 3 * day + 2

    never = burn_down_chart("p", ["2026-12-01", "2026-12-02"], 1000.0, [900.0, 800.0], "JPY", ran_out=None)
    assert len(_pixels(never, SHADE)[0]) == 0


def test_the_cost_chart_bars_are_as_high_as_the_days_cost():
    png = cost_chart("JPY", ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"],
                     [100.0, 50.0, 0.0, 0.0], [0.0, 50.0, 0.0, 0.0])
    discount = _bars(*_pixels(png, DISCOUNT))
    granted = _bars(*_pixels(png, GRANTED))
    (start_1, height_1), (start_2, height_2) = sorted(discount[:2])     # the legend's swatch: the narrow third
    assert start_1 < start_2 and abs(height_1 - 2 * height_2) < 4
    assert abs(granted[0][0] - start_2) < 3 and abs(granted[0][1] - height_2) < 4   # on top, as high again


def _bars(rows, columns) -> list[tuple[int, int]]:
    """Runs of neighbouring columns of a colour, the wide ones first: (first column, height in pixels)."""
    import numpy
    runs, order = [], numpy.unique(columns)
    first = previous = order[0]
    for c in [*order[1:], None]:
        if c is None or c != previous + 1:
            inside = (columns >= first) & (columns <= previous)
            runs.append((previous - first, int(first), int(rows[inside].max() - rows[inside].min())))
            first = c
        previous = c
    return [(start, height) for _, start, height in sorted(runs, key=lambda r: (-r[0], r[1]))]


@pytest.mark.parametrize("where, message", [
    ("dir", "is a directory"), ("nowhere/r.html", "its directory does not exist"),
    ("x" * 300, "cannot write"),
])
def test_a_report_that_cannot_be_written_is_refused_before_the_run(tmp_path, capsys, monkeypatch, where, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    _write(tmp_path / "c.jsonl", _corpus(["X"] * 6, count=3))
    code = main(["simulate", "--rules", str(ROOT / "rules"), "--carts", "c.jsonl", "--per-day", "2",
                 "--report", where])
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.startswith("promo simulate: --report") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "dir"]


def test_a_report_that_fails_while_written_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    import engine.simulate_report as report

    def refuse(path, html):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(report, "write_page", refuse)
    _write(tmp_path / "c.jsonl", _corpus(["X"] * 6, count=3))
    code = main(["simulate", "--rules", str(ROOT / "rules"), "--carts", str(tmp_path / "c.jsonl"), "--per-day", "2",
                 "--report", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert code == 1 and err.endswith(": cannot write: Permission denied\n") and err.count("\n") == 1


def test_with_abandoned_checkouts_and_cancellations_the_days_say_what_was_given_back(tmp_path):
    rules = _rules(tmp_path)
    corpus = _write(tmp_path / "c.jsonl", _corpus(["X"] * 6))
    report = tmp_path / "sim.html"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["simulate", "--rules", str(rules), "--carts", str(corpus), "--per-day", "3", "--json",
                     "--abandon-rate", "0.2", "--cancel-rate", "0.5", "--cancel-after", "2",
                     "--report", str(report)]) == 0
    data = json.loads(out.getvalue())
    page = Figures()
    page.feed(report.read_text(encoding="utf-8"))
    assert data["abandoned"] > 0 and data["cancelled"] > 0
    header, *days = page.tables["per-day"]
    assert header[-3:] == ["Abandoned", "Cancelled", "Given back"]
    for row, d in zip(days, data["per_day"], strict=True):
        cell = dict(zip(header, row))
        assert (int(cell["Abandoned"]), int(cell["Cancelled"])) == (d["abandoned"], d["cancelled"])
        back = cell["Given back"].split("; granted ")[0]
        assert _money(back) == d["discount_back"]
    assert dict(page.tables["run"])["Cancelled orders"] == "0.5, 2 days after the order"
    summary = dict(zip(*page.tables["summary"]))
    assert (int(summary["Abandoned"]), int(summary["Cancelled"])) == (data["abandoned"], data["cancelled"])
