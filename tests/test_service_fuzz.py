"""Schema-driven requests (schemathesis) against the real service, every operation of /openapi.json with
an admin key and a ledger: no 5xx, and every response conforms to its documented status, media type and
schema. Bounded: a few examples per operation, so that it stays a few seconds in CI."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from engine.ledger import make_engine, migrate
from engine.service.app import ENDPOINTS
from tests.service_support import start

EXAMPLES = 8
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    db = str(tmp / "ledger.db")
    engine = make_engine(db, create=True)
    migrate(engine)
    engine.dispose()
    srv = start(tmp, ledger=db)
    yield srv
    srv.stop()


def test_every_operation_answers_within_its_description(server):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    # schemathesis leaves out the operation that serves the schema it was loaded from
    assert {o.label for o in operations} == {f"{e.method} {e.path}" for e in ENDPOINTS if e.path != "/openapi.json"}
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS)
        run()
