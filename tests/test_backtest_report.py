"""`promo diff --report FILE.html` (engine/backtest_report.py): one self-contained page, its numbers the JSON's."""
from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from engine.cli import main

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """The page's tables (id -> rows of cell texts), its images' sources, and every URL it refers to."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.links: list[str] = []
        self.tags: set[str] = set()
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])
        for key in ("href", "src"):
            if key in attrs and tag != "img":
                self.links.append(attrs[key])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def run(tmp_path_factory, head, corpus):
    """Where the report goes, the changed rules and the corpus (tests/conftest.py)."""
    return tmp_path_factory.mktemp("report"), head, corpus


def test_the_report_holds_the_json_numbers_and_png_figures(run, capsys):
    tmp, head, corpus = run
    report = tmp / "diff.html"
    assert main(["diff", "--base", str(RULES), "--head", str(head), "--carts", str(corpus), "--json",
                 "--report", str(report), "--top", "4"]) == 0
    data = json.loads(capsys.readouterr().out)
    page = Page()
    page.feed(report.read_text(encoding="utf-8"))

    rows = {r[0]: r[1:] for r in page.tables["summary"][1:]}
    assert rows.pop("All")[:2] == [str(data["carts"]), str(data["changed"])]
    assert {c: r[2:] for c, r in rows.items()} == {
        c: [data["discount_before"][c], data["discount_after"][c], data["discount_delta"][c]] for c in data["discount_before"]}
    assert sum(int(r[0]) for r in rows.values()) == data["carts"]
    assert sum(int(r[1]) for r in rows.values()) == data["changed"]
    assert [r[0] for r in page.tables["promotions"][1:]] == list(data["by_promotion"])
    assert [(r[0], r[3], r[4], r[5]) for r in page.tables["top"][1:]] == \
        [(t["id"], t["discount_before"], t["discount_after"], t["discount_delta"]) for t in data["top"]]

    # a histogram per currency and a before/after bar chart per currency a changed promotion is in
    currencies = {c for p in data["by_promotion"].values() for c in (*p["discount_before"], *p["discount_after"])}
    assert len(page.images) == len(data["delta_histogram"]) + len(currencies) >= 2
    for src in page.images:
        head_, _, payload = src.partition(",")
        assert head_ == "data:image/png;base64" and base64.b64decode(payload, validate=True).startswith(PNG)
    assert not page.links and "script" not in page.tags and "link" not in page.tags     # nothing fetched


def test_a_report_into_a_missing_directory_is_refused_before_the_replay(run, capsys):
    tmp, head, corpus = run
    code = main(["diff", "--base", str(RULES), "--head", str(head), "--carts", str(corpus),
                 "--report", str(tmp / "nowhere" / "r.html")])
    assert code == 1 and "its directory does not exist" in capsys.readouterr().err
