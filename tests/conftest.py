import pytest


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*/expected.json from the engine's output (review the diff!)")


@pytest.fixture
def update_golden(request):
    return request.config.getoption("--update-golden")
