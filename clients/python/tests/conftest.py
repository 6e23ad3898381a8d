"""The SDK's tests run against a real server and agent, which
crates/hpcsera/tests/e2e/python.rs starts: HPCSERA_URL, HPCSERA_TOKEN (all roles of project
`p`), HPCSERA_SITE (its agent's site, with the job types `greet`, `noop`, `hello`, `sleep`),
HPCSERA_TEST_CLI (the `hpcsera` binary), HPCSERA_TEST_PERSON/PASSWORD (a member who logs in to
the web UI). Without them the tests fail: they are never skipped."""

import os

import pytest

import hpcsera


def need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these tests through crates/hpcsera/tests/e2e/python.rs")
    return value


@pytest.fixture(scope="session")
def url() -> str:
    return need("HPCSERA_URL")


@pytest.fixture(scope="session")
def token() -> str:
    return need("HPCSERA_TOKEN")


@pytest.fixture(scope="session")
def site() -> str:
    return need("HPCSERA_SITE")


@pytest.fixture
def client(url, token):
    with hpcsera.Client(url, token, timeout=30) as c:
        yield c


@pytest.fixture
async def aclient(url, token):
    async with hpcsera.AsyncClient(url, token, timeout=30) as c:
        yield c
