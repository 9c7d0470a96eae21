"""The rule set published to every worker (engine/service/shared.py, state.py), in-process: two Services
on one private directory stand for two workers of `promo serve --workers 2`."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.service import handlers
from engine.service.keys import Scope, create_key
from engine.service.metrics import Metrics
from engine.service.shared import SharedRules
from engine.service.state import Service, Settings
from tests.service_support import write_rules


@pytest.fixture
def settings(tmp_path) -> Settings:
    rules = write_rules(tmp_path / "rules")
    create_key(tmp_path / "keys.json", "ops", Scope.ADMIN)
    shared = tmp_path / "shared"
    shared.mkdir()
    return Settings(rules=str(rules), keys=str(tmp_path / "keys.json"), workers=2, shared=str(shared))


def _add_promotion(rules: Path, name: str) -> None:
    (rules / f"{name}.yaml").write_bytes((rules / "welcome-100.yaml").read_bytes()
                                         .replace(b"welcome-100", name.encode()).replace(b"WELCOME", name.upper().encode()))


def _ready(service: Service) -> tuple[int, dict]:
    return handlers.readyz(handlers.Call(service.current(), service, Metrics(), None))


def test_the_first_worker_publishes_and_the_others_start_on_it_even_if_the_directory_changed(settings):
    first = Service(settings)
    _add_promotion(Path(settings.rules), "later-edit")          # edited, never reloaded
    second = Service(settings)
    assert second.served.ruleset.version == first.served.ruleset.version
    assert second.served.generation == first.served.generation == 1
    assert second.served.loaded_at == first.served.loaded_at


def test_a_reload_on_one_worker_is_served_by_the_other_at_its_next_request(settings):
    outcomes: list[str] = []
    one, other = Service(settings), Service(settings, outcomes.append)
    old = other.current().ruleset.version
    _add_promotion(Path(settings.rules), "extra")
    reloaded = one.reload()
    assert reloaded.previous_version == old != reloaded.served.ruleset.version
    assert reloaded.served.generation == 2
    assert other.outdated()
    assert other.current().ruleset.version == reloaded.served.ruleset.version
    assert "extra" in other.current().ruleset.promotions
    assert not other.outdated() and outcomes == ["followed"]


def test_the_other_worker_builds_the_publishers_files_not_the_directorys(settings):
    one, other = Service(settings), Service(settings)
    _add_promotion(Path(settings.rules), "extra")
    published = one.reload().served.ruleset.version
    _add_promotion(Path(settings.rules), "edited-after-the-reload")
    assert other.current().ruleset.version == published
    assert "edited-after-the-reload" not in other.current().ruleset.promotions


def test_a_refused_reload_publishes_nothing(settings):
    one, other = Service(settings), Service(settings)
    (Path(settings.rules) / "broken.yaml").write_bytes(b"id: broken\n")
    with pytest.raises(ValueError):
        one.reload()
    assert SharedRules(settings.shared).read().generation == 1
    assert not other.outdated()


def test_a_publication_that_does_not_build_to_its_version_is_not_followed(settings):
    outcomes: list[str] = []
    one, other = Service(settings), Service(settings, outcomes.append)
    old = other.current().ruleset.version
    _add_promotion(Path(settings.rules), "extra")
    published = one.reload().served.ruleset.version
    snapshot = Path(settings.shared) / f"{published.partition(':')[2]}.pack"
    snapshot.write_bytes(b"not a rule set")
    assert other.current().ruleset.version == old            # it keeps serving what it had
    assert outcomes == ["not_followed"] and published in other.behind
    status, body = _ready(other)
    assert status == 503 and body["checks"]["rules"] == "behind"
    assert other.current().ruleset.version == old and outcomes == ["not_followed"]   # tried once, not per request
    _add_promotion(Path(settings.rules), "fixed")
    one.reload()                                              # the next publication is followed
    assert "fixed" in other.current().ruleset.promotions
    assert other.behind is None and _ready(other)[0] == 200


def test_a_worker_that_reloads_after_missing_a_publication_reports_what_every_worker_served(settings):
    one, other = Service(settings), Service(settings)
    _add_promotion(Path(settings.rules), "extra")
    middle = one.reload().served.ruleset.version
    _add_promotion(Path(settings.rules), "more")
    reloaded = other.reload()                                 # `other` never served `middle`
    assert reloaded.previous_version == middle
    assert reloaded.served.generation == 3
    assert one.current().ruleset.version == reloaded.served.ruleset.version


def test_one_worker_alone_publishes_nothing(tmp_path):
    rules = write_rules(tmp_path / "rules")
    create_key(tmp_path / "keys.json", "ops", Scope.ADMIN)
    service = Service(Settings(rules=str(rules), keys=str(tmp_path / "keys.json")))
    assert service.served.generation == 0 and not service.outdated()
    _add_promotion(rules, "extra")
    assert service.reload().served.generation == 0


def test_a_damaged_state_file_is_not_followed_and_fails_no_request(settings):
    outcomes: list[str] = []
    other = Service(settings, outcomes.append)
    old = other.current().ruleset.version
    (Path(settings.shared) / "current.json").write_bytes(b"{not json")
    assert other.current().ruleset.version == old
    assert outcomes == ["not_followed"] and _ready(other)[0] == 503
