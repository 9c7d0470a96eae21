"""The preview page (`GET /preview`, engine/service/preview.html) and its admin endpoints
(`/v1/admin/preview`, `/v1/admin/explain`, `/v1/admin/examples`, engine/service/examples.py).

The page is tested in a real headless Chromium (Debian's `chromium` and `chromium-driver`, installed with
apt-get when missing; Selenium is pointed at both, so Selenium Manager never downloads anything) against
the real service over loopback, with the bundled rules and examples and one promotion whose name is
markup. What the page shows is compared with what `engine.evaluate()` and `explain_promotion()` give for
the same inputs. A screenshot of the page is saved to test-output/preview.png.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from engine import evaluate, load_ruleset
from engine.service.examples import ExamplesError, read_examples
from engine.whynot import explain_promotion
from tests.service_support import start

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CHROMIUM = Path("/usr/bin/chromium")
DRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = ROOT / "test-output" / "preview.png"
# Without the background-networking flags Chromium's own connections are refused by a closed network.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--window-size=1400,1000")
MARKUP = "<img src=x onerror=alert(1)>"
INJECTED = (f'id: xss-name\nname: "{MARKUP}"\nstatus: active\ncurrency: JPY\ncode: XSS\n'
            'eligibility: {all: [{name: cart_subtotal, operator: greater_than_or_equal_to, value: "999999"}]}\n'
            'targets: {include: all}\nbenefits: [{type: amount_off, scope: per_order, amount: "100"}]\n'
            'stacking: {priority: 5, exclusive: false}\n').encode()
SYMBOLS = {"JPY": "¥", "USD": "$", "EUR": "€", "GBP": "£"}
WAIT = 15


def shown(amount: str, currency: str, minor: int) -> str:
    """An amount as the page writes it (preview.html `money`)."""
    text = f"{Decimal(amount):f}"
    sign = "−" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    number = f"{int(whole):,}" + (f".{fraction.ljust(minor, '0')}" if fraction or minor else "")
    return sign + (SYMBOLS[currency] + number if currency in SYMBOLS else f"{currency} {number}")


def _case(name: str) -> dict:
    [example] = [e for e in read_examples(EXAMPLES) if e.name == name]
    return example.to_dict()


# --- the service ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    files = {p.name: p.read_bytes() for p in (ROOT / "rules").iterdir() if p.is_file()}
    files["xss-name.yaml"] = INJECTED
    srv = start(tmp_path_factory.mktemp("preview"), files=files, extra_args=("--examples", str(EXAMPLES)))
    srv.ruleset = load_ruleset(srv.rules)
    yield srv
    srv.stop()


def test_the_page_holds_no_data_and_allows_only_its_own_script(server):
    response = httpx.get(f"{server.url}/preview")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"].startswith("'sha256-") and "unsafe" not in response.headers["content-security-policy"]
    assert policy["frame-ancestors"] == "'none'" and response.headers["x-content-type-options"] == "nosniff"
    assert "books-500-off-over-3000" not in response.text and "http://" not in response.text.replace(
        'xmlns="http://', "")   # no data, no external resources


@pytest.mark.parametrize("method, path", [("POST", "/v1/admin/preview"), ("POST", "/v1/admin/explain"),
                                          ("GET", "/v1/admin/examples")])
def test_the_admin_endpoints_refuse_a_checkout_key(server, method, path):
    with server.client("checkout") as c:
        response = c.request(method, path, json={})
    assert response.status_code == 403 and response.json()["reason"] == "forbidden"


def test_the_examples_are_the_bundled_cases(server):
    with server.client("admin") as c:
        listed = c.get("/v1/admin/examples").json()["examples"]
    assert [e["name"] for e in listed] == sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
    assert listed[0] == _case(listed[0]["name"])


def test_a_preview_is_the_engines_trace(server):
    case = _case("jp-mixed-cart")
    with server.client("admin") as c:
        response = c.post("/v1/admin/preview", json={k: case[k] for k in ("cart", "account", "codes", "now")})
    expected = evaluate(server.ruleset, case["cart"], case["account"], codes=case["codes"], now=case["now"])
    assert response.status_code == 200 and response.json() == expected.to_dict()


def test_a_preview_needs_its_instant(server):
    case = _case("jp-mixed-cart")
    with server.client("admin") as c:
        response = c.post("/v1/admin/preview", json={"cart": case["cart"], "account": case["account"]})
    assert response.status_code == 400 and response.json()["problems"][0]["message"] == "missing field now"


def test_an_explanation_is_explain_promotions(server):
    case = _case("jp-near-miss")
    body = {k: case[k] for k in ("cart", "account", "codes", "now")}
    with server.client("admin") as c:
        response = c.post("/v1/admin/explain", json={**body, "promotion": "books-500-off-over-3000"})
    expected = explain_promotion(server.ruleset, case["cart"], case["account"], "books-500-off-over-3000",
                                 codes=case["codes"], now=case["now"])
    assert response.status_code == 200 and response.json() == expected.to_dict()


def test_an_unknown_promotion_is_404_with_the_ids_that_are_close(server):
    case = _case("jp-near-miss")
    with server.client("admin") as c:
        response = c.post("/v1/admin/explain", json={"cart": case["cart"], "account": case["account"],
                                                      "now": case["now"], "promotion": "books-500"})
    assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"
    assert response.json()["problems"] == [{"path": "$.promotion", "message": "no promotion with this id"}]
    assert "did you mean books-500-off-over-3000?" in response.json()["detail"]


# --- the examples directory -------------------------------------------------------------------------

def _copy_case(tmp_path: Path, name: str = "one") -> Path:
    shutil.copytree(EXAMPLES / "jp-near-miss", tmp_path / name)
    return tmp_path / name


def test_an_examples_directory_reads_its_cases_and_passes_over_files(tmp_path):
    _copy_case(tmp_path)
    (tmp_path / "notes.py").write_text("not a case")
    [one] = read_examples(tmp_path)
    assert one.name == "one" and one.now == "2026-11-21T10:00:00+09:00"


def test_a_linked_case_or_file_is_refused_not_followed(tmp_path):
    case = _copy_case(tmp_path)
    os.symlink(case, tmp_path / "linked")
    (case / "account.json").unlink()
    os.symlink(EXAMPLES / "jp-near-miss" / "account.json", case / "account.json")
    with pytest.raises(ExamplesError) as refused:
        read_examples(tmp_path)
    assert {(Path(p.file).name, "symbolic link" in p.message) for p in refused.value.problems} == \
        {("linked", True), ("account.json", True)}


def test_a_case_with_a_missing_file_or_a_bad_cart_says_which(tmp_path):
    (_copy_case(tmp_path, "a") / "case.json").unlink()
    cart = _copy_case(tmp_path, "b") / "cart.json"
    cart.write_text(cart.read_text().replace('"598"', "598.5"))
    with pytest.raises(ExamplesError) as refused:
        read_examples(tmp_path)
    assert [(Path(p.file).parent.name, Path(p.file).name) for p in refused.value.problems] == \
        [("a", "case.json"), ("b", "cart.json")]
    assert refused.value.problems[1].path == "$.lines[0].unit_price"


def test_the_service_does_not_start_with_a_broken_examples_directory(tmp_path):
    (_copy_case(tmp_path / "examples") / "now.json").write_text("{}")
    (tmp_path / "examples" / "one" / "case.json").write_text('{"description": "x"}')
    with pytest.raises(RuntimeError, match="not started: examples directory"):
        start(tmp_path)      # tmp/examples is beside tmp/rules: the default


# --- the page in a browser --------------------------------------------------------------------------

def _installed() -> None:
    """Chromium and its driver from Debian when missing; a clear failure (never a skip) if that fails."""
    if CHROMIUM.exists() and DRIVER.exists():
        return
    if shutil.which("apt-get") is None:
        pytest.fail("the preview page's test needs /usr/bin/chromium and /usr/bin/chromedriver, and there is no "
                    "apt-get to install them: install Debian's chromium and chromium-driver")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]
    done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:   # the package lists may never have been fetched
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, env=env, timeout=600)
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0 or not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.fail(f"could not install chromium and chromium-driver with apt-get (exit {done.returncode}); "
                    f"the preview page's test needs them:\n{done.stderr[-2000:]}")


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    started = time.monotonic()
    _installed()
    print(f"\nchromium ready in {time.monotonic() - started:.1f} s")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        driver.get(f"{server.url}/preview")
        driver.find_element("id", "key").send_keys(server.admin_key)
        driver.find_element("id", "key-save").click()
        _until(driver, lambda d: len(d.find_elements("css selector", "#example option")) > 1)
        yield driver
    finally:
        driver.quit()


def _until(driver, condition, what: str = "the page to answer"):
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(driver, WAIT).until(condition)
    except Exception:
        pytest.fail(f"waited {WAIT} s for {what}; the page shows: {driver.find_element('tag name', 'body').text[:3000]}")


def _text(driver, css: str) -> str:
    return driver.find_element("css selector", css).text


def _previewed(driver, name: str) -> None:
    """Pick the example `name` and preview it; return once the trace is on the page."""
    from selenium.webdriver.support.ui import Select
    driver.execute_script("document.getElementById('result').classList.add('hidden')")
    Select(driver.find_element("id", "example")).select_by_visible_text(name)
    driver.find_element("id", "run").click()
    _until(driver, lambda d: d.find_element("id", "result").is_displayed(), f"the trace of {name}")


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_a_bundled_example_is_shown_as_the_engine_evaluates_it(server, browser, name):
    _previewed(browser, name)
    case = _case(name)
    trace = evaluate(server.ruleset, case["cart"], case["account"], codes=case["codes"], now=case["now"]).to_dict()
    money = lambda amount: shown(amount, trace["currency"], trace["minor_unit"])   # noqa: E731
    for line in trace["lines"]:
        row = f"#lines tr[data-line='{line['id']}']"
        assert _text(browser, f"{row} td.total") == money(line["total"])
        assert _text(browser, f"{row} td.subtotal") == money(line["subtotal"])
        given = [e.get_attribute("data-promotion") for e in browser.find_elements("css selector", f"{row} li")]
        assert given == [d["promotion"] for d in line["discounts"]]
    rows = browser.find_elements("css selector", "#applied tbody tr[data-promotion]")
    assert [(r.get_attribute("data-promotion"), r.find_element("css selector", "td.amount").text) for r in rows] == \
        [(a["promotion"], money(a["amount"])) for a in trace["applied"]]
    rows = browser.find_elements("css selector", "#not-applied tbody tr[data-promotion]")
    assert [(r.get_attribute("data-promotion"), r.find_element("css selector", "td.reason").text,
             r.find_element("css selector", "td.message").text.split("\n")[0]) for r in rows] == \
        [(n["promotion"], n["reason"], n["message"]) for n in trace["not_applied"]]
    hints = [h.text for h in browser.find_elements("css selector", "#hints li[data-promotion]")]
    assert len(hints) == len(trace["hints"]) and all(h.startswith(t["message"]) for h, t in zip(hints, trace["hints"]))
    scopes = {r.get_attribute("data-reason"): int(r.find_element("css selector", "td.count").text)
              for r in browser.find_elements("css selector", "#out-of-scope tr[data-reason]")}
    assert scopes == trace["out_of_scope"]
    assert _text(browser, "#total-due") == money(trace["totals"]["total"])
    assert _text(browser, "#tenders-due") == money(trace["tenders"]["due"])
    paid = [r.find_element("css selector", "td.amount").text
            for r in browser.find_elements("css selector", "#tenders tbody tr")]
    assert paid == [money(u["amount"]) for u in (*trace["tenders"]["used"], trace["tenders"]["payment_method"])]


def _steps(driver) -> list[tuple[str, str, str, str]]:
    return [tuple(r.find_element("css selector", f"td.{c}").text for c in ("stage", "check", "result", "message"))
            for r in driver.find_elements("css selector", "#steps tbody tr")]


def _expected_steps(explanation: dict) -> list[tuple[str, str, str, str]]:
    return [(s["stage"], s["check"], ("pass" if s["passed"] else "fail") + ("" if s["reached"] else " not reached"),
             s["message"]) for s in explanation["steps"]]


def test_clicking_a_not_applied_promotion_shows_its_explanation(server, browser):
    _previewed(browser, "jp-near-miss")
    case = _case("jp-near-miss")
    browser.find_element("css selector",
                         "#not-applied tr[data-promotion='books-500-off-over-3000'] button.promo").click()
    _until(browser, lambda d: "books-500-off-over-3000" in d.find_element("id", "explanation-title").text)
    expected = explain_promotion(server.ruleset, case["cart"], case["account"], "books-500-off-over-3000",
                                 codes=case["codes"], now=case["now"]).to_dict()
    assert _steps(browser) == _expected_steps(expected)
    assert "min_spend_not_met" in _text(browser, "#explanation-verdict")
    assert [f.text for f in browser.find_elements("css selector", "#fixes li")] == expected["fixes"]
    # A promotion typed in by id, out of scope here: the steps after the first that fails are "not reached".
    browser.find_element("id", "explain-id").send_keys("welcome-first-order-jp")
    browser.find_element("id", "explain-run").click()
    _until(browser, lambda d: "welcome-first-order-jp" in d.find_element("id", "explanation-title").text)
    expected = explain_promotion(server.ruleset, case["cart"], case["account"], "welcome-first-order-jp",
                                 codes=case["codes"], now=case["now"]).to_dict()
    assert _steps(browser) == _expected_steps(expected)
    assert any(not s["reached"] for s in expected["steps"])
    browser.find_element("id", "explain-id").clear()
    browser.find_element("css selector", "#not-applied tr[data-promotion='free-shipping-over-3500'] button.promo").click()
    _until(browser, lambda d: "free-shipping-over-3500" in d.find_element("id", "explanation-title").text)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(height + 140, 8000))
    browser.save_screenshot(str(SCREENSHOT))
    browser.set_window_size(1400, 1000)
    print(f"\nscreenshot of the preview page: {SCREENSHOT}")


def test_values_from_rules_and_carts_are_shown_as_text_never_as_markup(server, browser):
    from selenium.common.exceptions import NoAlertPresentException
    case = _case("jp-near-miss")
    cart = dict(case["cart"], lines=[dict(case["cart"]["lines"][0], name="<b>bold</b><script>window.pwned=1</script>")])
    import json
    browser.execute_script("""
        document.getElementById('example').value = '';
        document.getElementById('cart').value = arguments[0];
        document.getElementById('account').value = arguments[1];
        document.getElementById('codes').value = 'XSS';
        document.getElementById('result').classList.add('hidden');""", json.dumps(cart), json.dumps(case["account"]))
    browser.find_element("id", "run").click()
    _until(browser, lambda d: d.find_elements("css selector", "#not-applied tr[data-promotion='xss-name']"),
           "the promotion named with markup")
    row = "#not-applied tr[data-promotion='xss-name']"
    assert _text(browser, f"{row} button.promo") == MARKUP
    assert _text(browser, "#lines tr[data-line='L1'] td.item").startswith("<b>bold</b><script>window.pwned=1</script>")
    browser.find_element("css selector", f"{row} button.promo").click()
    _until(browser, lambda d: MARKUP in d.find_element("id", "explanation-title").text)
    assert browser.find_elements("css selector", "main img, main b, main script") == []
    assert browser.execute_script("return window.pwned === undefined")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
