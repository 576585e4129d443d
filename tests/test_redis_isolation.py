"""The per-session Redis database allocator, against the real Redis server.

These claims use the same lock key as real sessions, so they never touch a database another
session on this machine holds; they only take free ones and give them back.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support.redis_db import (
    LOCK_KEY,
    NoFreeRedisDb,
    RedisDbClaim,
    claim_redis_db,
    flush_keeping_claim,
    lock_holder,
)


@pytest.fixture
def server(redis_url: str) -> str:
    """The server behind this session's database (asking for it also gates on Redis)."""
    return redis_url.rsplit("/", 1)[0]


@pytest.fixture
def claims() -> Iterator[list[RedisDbClaim]]:
    """Claims made by a test, released even when it fails."""
    made: list[RedisDbClaim] = []
    yield made
    for claim in made:
        claim.release()


def _client(url: str) -> redis.Redis[bytes]:
    return redis.Redis.from_url(url)


def test_the_session_holds_its_database(redis_url: str) -> None:
    assert lock_holder(redis_url) is not None
    assert not redis_url.endswith("/0")


def test_two_claims_get_different_databases(
    server: str, redis_url: str, claims: list[RedisDbClaim]
) -> None:
    claims.append(claim_redis_db(server, refresh_every_s=None))
    claims.append(claim_redis_db(server, refresh_every_s=None))
    first, second = claims
    assert first.db != second.db
    assert redis_url not in (first.url, second.url)  # nor this session's own database
    assert lock_holder(first.url) == first.token.encode()
    assert lock_holder(second.url) == second.token.encode()


def test_a_held_database_is_not_handed_out(server: str, claims: list[RedisDbClaim]) -> None:
    claims.append(claim_redis_db(server, refresh_every_s=None))
    with pytest.raises(NoFreeRedisDb, match=LOCK_KEY):
        claim_redis_db(server, dbs=[claims[0].db], refresh_every_s=None)


def test_a_released_database_is_claimed_again_and_emptied(
    server: str, claims: list[RedisDbClaim]
) -> None:
    first = claim_redis_db(server, refresh_every_s=None)
    _client(first.url).set("left-behind", "by the previous session")
    first.release()
    assert lock_holder(first.url) is None

    claims.append(claim_redis_db(server, dbs=[first.db], refresh_every_s=None))
    again = claims[0]
    assert again.db == first.db
    assert again.token != first.token
    assert _client(again.url).keys() == [LOCK_KEY.encode()]


def test_release_never_frees_another_sessions_lock(server: str, claims: list[RedisDbClaim]) -> None:
    stale = claim_redis_db(server, refresh_every_s=None)
    # As if our TTL had run out and another session had claimed the database since.
    _client(stale.url).set(LOCK_KEY, "another-session", ex=60)
    stale.release()
    assert lock_holder(stale.url) == b"another-session"
    _client(stale.url).delete(LOCK_KEY)


def test_flushing_a_claimed_database_keeps_the_claim(
    server: str, claims: list[RedisDbClaim]
) -> None:
    claims.append(claim_redis_db(server, refresh_every_s=None))
    claim = claims[0]
    _client(claim.url).set("queue", "messages")
    flush_keeping_claim(claim.url)
    assert _client(claim.url).keys() == [LOCK_KEY.encode()]
    assert lock_holder(claim.url) == claim.token.encode()
    assert 0 < _client(claim.url).ttl(LOCK_KEY) <= claim.ttl_s


def test_refresh_extends_the_lock_and_retakes_it_after_a_plain_flush(
    server: str, claims: list[RedisDbClaim]
) -> None:
    claims.append(claim_redis_db(server, ttl_s=30, refresh_every_s=None))
    claim = claims[0]
    client = _client(claim.url)
    client.expire(LOCK_KEY, 5)
    assert claim.refresh()
    assert client.ttl(LOCK_KEY) > 5
    client.flushdb()  # a test that forgot flush_keeping_claim
    assert claim.refresh()
    assert lock_holder(claim.url) == claim.token.encode()
    client.set(LOCK_KEY, "another-session")
    assert not claim.refresh()
    client.delete(LOCK_KEY)
