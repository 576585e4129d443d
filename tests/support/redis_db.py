"""One Redis database per test session, claimed exclusively.

Several pytest sessions may run on one machine at once (two checkouts, CI jobs sharing a
Redis). Celery's Redis transport keeps its queues in the database named in the broker URL,
so two sessions on the same database would steal each other's messages and flush each
other's queues. Each session therefore claims a database number of its own:

* ``SET renewals-test-lock <token> NX EX <ttl>`` in each candidate database in turn; the
  first that succeeds is ours;
* it is emptied at once (in one transaction that also rewrites our lock);
* a daemon thread extends the lock's TTL while the session lives, so a session killed with
  SIGKILL frees its database within ``ttl_s`` seconds instead of holding it forever;
* at the end the lock is deleted, but only if it is still ours.

Database 0 is never claimed: it is the default for anything else using this Redis.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import redis

LOCK_KEY = "renewals-test-lock"
CANDIDATE_DBS = range(1, 16)
LOCK_TTL_S = 120
REFRESH_EVERY_S = LOCK_TTL_S / 4

# Extend the lock if it is ours; take it back if a test flushed it away; else report -1.
_REFRESH = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if not current then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
    return 2
end
return -1
"""
# Delete the lock only if it is ours (never another session's after our TTL ran out).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Empty the database but keep whatever lock is in it, with its remaining TTL.
_FLUSH_KEEPING_LOCK = """
local token = redis.call('GET', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
redis.call('FLUSHDB')
if token then
    if ttl > 0 then redis.call('SET', KEYS[1], token, 'EX', ttl)
    else redis.call('SET', KEYS[1], token) end
end
return 1
"""


class NoFreeRedisDb(RuntimeError):
    """Every candidate database is claimed by another live session."""


def db_url(server_url: str, db: int) -> str:
    """``server_url`` (``redis://host:port[/n]``) pointed at database ``db``."""
    base = server_url.split("?", 1)[0].rstrip("/")
    scheme, rest = base.split("://", 1)
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}/{db}"


@dataclass
class RedisDbClaim:
    """An exclusively held database; ``release()`` (idempotent) gives it back."""

    url: str
    db: int
    token: str
    ttl_s: int
    _client: redis.Redis[bytes] = field(repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start_refreshing(self, every_s: float) -> None:
        self._thread = threading.Thread(
            target=self._refresh_loop, args=(every_s,), name=f"redis-claim-{self.db}", daemon=True
        )
        self._thread.start()

    def refresh(self) -> bool:
        """Extend the lock (or take it back after a flush); False if another session has it."""
        result = self._client.eval(_REFRESH, 1, LOCK_KEY, self.token, self.ttl_s)
        return cast(int, result) != -1

    def _refresh_loop(self, every_s: float) -> None:
        # Event.wait is the refresh period, not a test synchronisation: it only keeps the
        # lock alive while the session runs.
        while not self._stop.wait(every_s):
            # Redis gone for a moment: the next refresh tries again.
            with contextlib.suppress(redis.RedisError):
                self.refresh()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self._client.eval(_RELEASE, 1, LOCK_KEY, self.token)
        finally:
            self._client.close()


def claim_redis_db(
    server_url: str,
    *,
    dbs: range | list[int] = CANDIDATE_DBS,
    ttl_s: int = LOCK_TTL_S,
    refresh_every_s: float | None = REFRESH_EVERY_S,
) -> RedisDbClaim:
    """Claim the first free database among ``dbs``, empty it and return the claim.

    ``refresh_every_s=None`` leaves the TTL alone (the allocator's own tests).
    """
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    for db in dbs:
        url = db_url(server_url, db)
        client = redis.Redis.from_url(url)
        try:
            taken = client.set(LOCK_KEY, token, nx=True, ex=ttl_s)
        except redis.ResponseError:  # "DB index is out of range": fewer databases configured
            client.close()
            break
        if not taken:
            client.close()
            continue
        # Ours now; empty it and rewrite the lock in one transaction so no other session can
        # see the database unlocked in between.
        pipe = client.pipeline(transaction=True)
        pipe.flushdb()
        pipe.set(LOCK_KEY, token, ex=ttl_s)
        pipe.execute()
        claim = RedisDbClaim(url, db, token, ttl_s, client)
        if refresh_every_s is not None:
            claim.start_refreshing(refresh_every_s)
        return claim
    raise NoFreeRedisDb(
        f"every Redis database in {list(dbs)} is claimed by another test session "
        f"(key {LOCK_KEY!r}); wait for them, or set RENEWALS_TEST_REDIS_URL"
    )


def flush_keeping_claim(url: str) -> None:
    """FLUSHDB for tests that want an empty broker, without dropping this session's lock."""
    client = redis.Redis.from_url(url)
    try:
        client.eval(_FLUSH_KEEPING_LOCK, 1, LOCK_KEY)
    finally:
        client.close()


def lock_holder(url: str) -> Any:
    """The token holding ``url``'s database (bytes), or None; for the allocator's tests."""
    client = redis.Redis.from_url(url)
    try:
        return client.get(LOCK_KEY)
    finally:
        client.close()
