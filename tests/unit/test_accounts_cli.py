"""``scanq tokens …`` and ``scanq tenants …`` through click, on a MemoryStore shared by URL within the process."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result

from scanq.auth import Authenticator, hash_secret
from scanq.cli import cli
from scanq.exceptions import Unauthenticated
from scanq.models import ApiToken, Scope, TenantLimits
from scanq.store.memory import MemoryStore

SECRET = re.compile(r"scanq_[A-Za-z0-9_-]{43}")
TOKEN_ID = re.compile(r"tok_[0-9a-f]+")


@pytest.fixture
def url() -> str:
    return f"memory://{uuid.uuid4()}"


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"SCANQ_DATABASE_URL": url})


def create(url: str, *args: str) -> tuple[str, str]:
    """Create a token; its secret (stdout) and id (stderr)."""
    result = invoke(url, "tokens", "create", *args)
    assert result.exit_code == 0, result.output
    found = TOKEN_ID.search(result.stderr)
    assert found is not None, result.stderr
    return result.stdout.strip(), found.group()


def stored_tokens(url: str) -> list[ApiToken]:
    async def read() -> list[ApiToken]:
        async with MemoryStore(url) as store:
            return await store.list_tokens()

    return asyncio.run(read())


def stored_limits(url: str) -> list[TenantLimits]:
    async def read() -> list[TenantLimits]:
        async with MemoryStore(url) as store:
            return await store.list_tenant_limits()

    return asyncio.run(read())


def row_of(listing: str, token_id: str) -> list[str]:
    (line,) = [line for line in listing.splitlines() if line.startswith(token_id)]
    return line.split()


def one_line_error(result: Result) -> str:
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- tokens create -------------------------------------------------------------------------------


def test_create_prints_the_secret_alone_on_stdout_and_the_id_on_stderr(url: str) -> None:
    result = invoke(url, "tokens", "create", "--tenant", "acme", "--scopes", "submit,read", "--name", "ci")

    assert result.exit_code == 0, result.output
    assert SECRET.fullmatch(result.stdout.strip())
    assert result.stdout.count("\n") == 1
    (token,) = stored_tokens(url)
    assert token.token_id in result.stderr
    assert token.token_id not in result.stdout
    assert SECRET.search(result.stderr) is None
    assert "acme" in result.stderr and "shown only now" in result.stderr


def test_create_stores_the_hash_tenant_scopes_name_and_expiry(url: str) -> None:
    before = datetime.now(UTC)
    secret, token_id = create(url, "--tenant", "acme", "--scopes", "submit,read", "--name", "ci", "--expires", "90d")

    (token,) = stored_tokens(url)
    assert token.token_id == token_id
    assert token.secret_hash == hash_secret(secret)
    assert (token.tenant, token.scopes, token.name) == ("acme", frozenset({Scope.SUBMIT, Scope.READ}), "ci")
    assert token.expires_at is not None
    assert before + timedelta(days=90) <= token.expires_at <= datetime.now(UTC) + timedelta(days=90)


def test_a_created_token_authenticates_as_its_tenant(url: str) -> None:
    secret, token_id = create(url, "--tenant", "acme", "--scopes", "read")

    async def check() -> None:
        async with MemoryStore(url) as store:
            caller = await Authenticator(store).authenticate(f"Bearer {secret}")
            assert (caller.tenant, caller.scopes) == ("acme", frozenset({Scope.READ}))
            assert caller.actor is not None and caller.actor.token_id == token_id

    asyncio.run(check())


def test_create_defaults_to_submit_read_cancel_and_no_expiry(url: str) -> None:
    create(url, "--tenant", "acme")

    (token,) = stored_tokens(url)
    assert token.scopes == frozenset({Scope.SUBMIT, Scope.READ, Scope.CANCEL})
    assert token.expires_at is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--scopes", "submit,write"), "unknown scope 'write'"),
        (("--scopes", ""), "unknown scope ''"),
        (("--expires", "soon"), "'soon' is not a lifetime"),
        (("--expires", "0d"), "is not a lifetime"),
        (("--name", "n" * 201), "a token name is 1 to 200 characters"),
    ],
)
def test_create_refuses_bad_input_in_one_line_and_stores_nothing(url: str, args: tuple[str, ...], message: str) -> None:
    result = invoke(url, "tokens", "create", "--tenant", "acme", *args)

    assert result.exit_code == 1
    assert message in one_line_error(result)
    assert stored_tokens(url) == []


def test_create_refuses_an_invalid_tenant(url: str) -> None:
    result = invoke(url, "tokens", "create", "--tenant", "no spaces")

    assert "tenant" in one_line_error(result)
    assert stored_tokens(url) == []


# -- tokens list, revoke -------------------------------------------------------------------------


def test_list_shows_a_token_without_its_secret(url: str) -> None:
    secret, token_id = create(url, "--tenant", "acme", "--scopes", "submit,read", "--name", "ci", "--expires", "90d")

    result = invoke(url, "tokens", "list")

    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0]
    assert header.split()[:4] == ["id", "tenant", "scopes", "name"]
    row = row_of(result.stdout, token_id)
    assert row[1:4] == ["acme", "read,submit", "ci"]
    assert row[-1] == "active"
    assert secret not in result.output
    assert secret.removeprefix("scanq_") not in result.output
    assert hash_secret(secret) not in result.output


def test_list_filters_by_tenant(url: str) -> None:
    _, acme = create(url, "--tenant", "acme")
    _, other = create(url, "--tenant", "other")

    result = invoke(url, "tokens", "list", "--tenant", "acme")

    assert result.exit_code == 0, result.output
    assert acme in result.stdout and other not in result.stdout


def test_revoke_then_list_shows_the_token_revoked(url: str) -> None:
    secret, token_id = create(url, "--tenant", "acme")
    _, kept = create(url, "--tenant", "acme")

    revoked = invoke(url, "tokens", "revoke", token_id)
    listing = invoke(url, "tokens", "list")

    assert revoked.exit_code == 0, revoked.output
    assert f"token {token_id} revoked at " in revoked.stdout
    assert row_of(listing.stdout, token_id)[-1] == "revoked"
    assert row_of(listing.stdout, kept)[-1] == "active"

    async def check() -> None:
        async with MemoryStore(url) as store:
            with pytest.raises(Unauthenticated, match="revoked"):
                await Authenticator(store).authenticate(f"Bearer {secret}")

    asyncio.run(check())


def test_revoking_twice_keeps_the_first_revocation_time(url: str) -> None:
    _, token_id = create(url, "--tenant", "acme")

    first = invoke(url, "tokens", "revoke", token_id)
    second = invoke(url, "tokens", "revoke", token_id)

    assert first.exit_code == second.exit_code == 0
    assert first.stdout == second.stdout


def test_revoking_an_unknown_id_exits_1_in_one_line(url: str) -> None:
    result = invoke(url, "tokens", "revoke", "tok_0000000000000000")

    assert result.exit_code == 1
    assert "no API token with id 'tok_0000000000000000'" in one_line_error(result)


# -- tenants -------------------------------------------------------------------------------------


def test_tenants_set_then_list_shows_the_limits(url: str) -> None:
    set_ = invoke(url, "tenants", "set", "acme", "--max-queued", "5", "--rate", "2", "--weight", "3")
    listing = invoke(url, "tenants", "list")

    assert set_.exit_code == 0, set_.output
    assert "at most 5 unfinished scans" in set_.stdout and "at most 2 submissions per second" in set_.stdout
    assert "weight 3" in set_.stdout
    assert listing.exit_code == 0, listing.output
    assert listing.stdout.splitlines()[0].split() == ["tenant", "max", "queued", "rate", "per", "s", "weight"]
    (row,) = [line.split() for line in listing.stdout.splitlines() if line.startswith("acme")]
    assert row == ["acme", "5", "2", "3"]
    assert stored_limits(url) == [TenantLimits(tenant="acme", max_queued=5, rate_per_s=2.0, weight=3.0)]


@pytest.mark.parametrize("weight", ["0", "-1", "1001"])
def test_tenants_set_refuses_a_weight_out_of_bounds(url: str, weight: str) -> None:
    result = invoke(url, "tenants", "set", "acme", "--weight", weight)

    assert result.exit_code != 0
    assert "--weight must be between 0.01 and 1000" in result.output
    assert stored_limits(url) == []


def test_tenants_set_without_a_limit_makes_it_unlimited(url: str) -> None:
    invoke(url, "tenants", "set", "acme", "--max-queued", "5", "--rate", "2")

    result = invoke(url, "tenants", "set", "acme", "--rate", "0.5")

    assert result.exit_code == 0, result.output
    assert "unlimited unfinished scans" in result.stdout
    assert stored_limits(url) == [TenantLimits(tenant="acme", max_queued=None, rate_per_s=0.5)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("acme", "--max-queued", "-1"), "--max-queued must not be negative"),
        (("acme", "--rate", "0"), "--rate must be more than 0"),
        (("not valid", "--rate", "1"), "tenant"),
    ],
)
def test_tenants_set_refuses_bad_limits_in_one_line(url: str, args: tuple[str, ...], message: str) -> None:
    result = invoke(url, "tenants", "set", *args)

    assert result.exit_code == 1
    assert message in one_line_error(result)
    assert stored_limits(url) == []


def test_tenants_list_without_tenants_prints_only_the_header(url: str) -> None:
    result = invoke(url, "tenants", "list")

    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 2
