"""promo-engine installed from a built wheel, not from the checkout: the wheel carries the schemas, the
message catalogues and the migrations, and its `promo` validates, evaluates and serves from a
directory that has no checkout in it.

Offline and quick: the wheel is built without build isolation (the current environment's setuptools),
installed with --no-deps into a fresh virtual environment, which reaches the dependencies through a
.pth line naming this environment's site-packages (a plain path, so this environment's editable
install of the checkout is not picked up)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

from tests.service_support import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.packaging


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "schema_files", "*.egg-info")
    for name in ("engine", "schemas"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp / "dist"), str(src)], tmp, env)
    [wheel] = (tmp / "dist").glob("promo_engine-*.whl")
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)
    python = venv / "bin" / "python"
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       tmp, env).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "_promo_test_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
         str(wheel)], tmp, env)
    work = tmp / "elsewhere"
    shutil.copytree(ROOT / "rules", work / "rules")
    shutil.copytree(ROOT / "examples" / "jp-mixed-cart", work / "order")
    return venv, work, env


def test_the_wheel_is_what_python_imports_outside_the_checkout(installed):
    venv, work, env = installed
    where = run([str(venv / "bin" / "python"), "-c", "import engine, engine.schemas as s; "
                 "print(engine.__file__); print(s.SCHEMA_DIR)"], work, env).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where
    assert where[1].endswith("engine/schema_files")


def test_the_installed_promo_validates_and_evaluates(installed):
    venv, work, env = installed
    promo = str(venv / "bin" / "promo")
    run([promo, "validate", "rules"], work, env)
    out = run([promo, "evaluate", "--rules", "rules", "--cart", "order/cart.json", "--account", "order/account.json",
               "--code", "WELCOME", "--now", "2026-11-21T10:00:00+09:00", "--json"], work, env).stdout
    trace = json.loads(out)
    assert trace["ruleset_version"].startswith("sha256:")
    assert "welcome-first-order-jp" in {a["promotion"] for a in trace["applied"]}
    run([promo, "new", "tiered", "from-the-wheel", "--rules", "rules"], work, env)   # templates are in the wheel
    assert "status: draft" in (work / "rules" / "from-the-wheel.yaml").read_text("utf-8")
    run([promo, "validate", "rules"], work, env)


def test_the_installed_service_serves_its_schemas_and_japanese(installed):
    venv, work, env = installed
    promo = str(venv / "bin" / "promo")
    key = run([promo, "keys", "create", "--file", "keys.json", "--name", "web", "--scope", "checkout"],
              work, env).stdout.strip()
    port = free_port()
    with open(work / "serve.log", "wb") as log:
        server = subprocess.Popen([promo, "serve", "--rules", "rules", "--keys", "keys.json", "--port", str(port)],
                                  cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None and time.monotonic() < deadline, (work / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        document = httpx.get(f"{url}/openapi.json").json()
        assert {"Cart", "Account", "Trace", "CustomerTrace"} <= set(document["components"]["schemas"])
        checked = httpx.post(f"{url}/v1/codes/check", json={"code": "NO-SUCH-CODE"},
                             headers={"Authorization": f"Bearer {key}", "Accept-Language": "ja"})
        assert checked.json() == {"usable": False, "message": "このコードはご利用いただけません。"}
        page = httpx.get(f"{url}/preview")   # package data: engine/service/preview.html
        assert page.status_code == 200 and "<title>promo-engine preview</title>" in page.text
    finally:
        server.terminate()
        server.wait(timeout=10)
