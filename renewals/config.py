"""Configuration: every ``RENEWALS_*`` variable, typed and validated once at start-up.

The defaults are the embedded ones (SQLite under ``./var/``, a broker on a SQLite file, the
local FastStar sandbox, mail written to files), so ``make run`` needs no server. Production
values are documented in the README. A bad or missing value stops start-up with one message
that names every offending variable.
"""

from __future__ import annotations

import functools
import importlib.util
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from renewals.crashpoints import parse as parse_crash_points
from renewals.domain.dunning import parse_day_list, parse_durations
from renewals.domain.reconciliation import UnknownRecheckPolicy

ENV_PREFIX = "RENEWALS_"
VAR_DIR = Path("var")

MAIL_SCHEMES = ("smtp", "smtps", "file", "console")
# Brokers kombu can reach with what we install (redis, py-amqp, SQLAlchemy); memory:// is
# one process only, for tests. Anything else fails at start-up rather than deep in Celery.
BROKER_SCHEMES = (
    "redis",
    "rediss",
    "amqp",
    "amqps",
    "pyamqp",
    "sqla+sqlite",
    "sqla+postgresql",
    "sqla+postgresql+psycopg",
    "memory",
)

# A task is killed after this long (renewals.worker.celery_app): the broker's visibility
# timeout must be longer, so a message is only redelivered when its worker really died.
TASK_TIME_LIMIT_S = 90

DEFAULT_API_KEY = "sk_test_local"  # published in the README, not a secret
DEFAULT_WEBHOOK_SECRET = "whsec_local"  # noqa: S105 - published in the README, not a secret
# Anyone can sign a webhook with a secret printed in our README or the sandbox's code, so
# production refuses all of them (the sandbox's own default is published too).
PUBLISHED_WEBHOOK_SECRETS = frozenset({DEFAULT_WEBHOOK_SECRET, "whsec_sandbox"})
TEST_KEY_PREFIX = "sk_test_"
# A guessable signing secret lets anyone forge "renewed" to the merchant's backend.
MIN_MERCHANT_SECRET_LEN = 24


class ConfigError(Exception):
    """Raised when the environment does not describe a usable configuration."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    env: Literal["development", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # None: console in development, JSON in production.
    log_format: Literal["console", "json"] | None = None

    database_url: str = f"sqlite:///{VAR_DIR}/renewals.db"
    # kombu's SQLAlchemy transport works across separate worker and beat processes.
    broker_url: str = f"sqla+sqlite:///{VAR_DIR}/broker.db"

    faststar_base_url: str = "http://127.0.0.1:8787/api/v1"
    faststar_api_key: SecretStr = SecretStr(DEFAULT_API_KEY)
    faststar_webhook_secret: SecretStr = SecretStr(DEFAULT_WEBHOOK_SECRET)
    # Production refuses sk_test_ keys unless this says a test key is meant (a staging
    # deployment against FastStar's test mode).
    allow_test_keys: bool = False
    faststar_connect_timeout: float = Field(default=3.0, gt=0)
    faststar_read_timeout: float = Field(default=15.0, gt=0)
    # Client-side token bucket; None leaves it off.
    faststar_rate_limit_per_s: float | None = Field(default=None, gt=0)
    webhook_tolerance_s: int = Field(default=300, ge=1)
    # Old secrets still accepted while a rotation is under way (comma-separated).
    faststar_webhook_secrets_old: SecretStr = SecretStr("")
    webhook_max_body_bytes: int = Field(default=262_144, ge=1024)
    # Deployments without webhooks learn of on-session payments by polling each open
    # Checkout Session this often (0 turns polling off).
    checkout_poll_interval: float = Field(default=300.0, ge=0)
    # Unknown outcomes: when to look again, and for how long a same-key retry is allowed.
    unknown_recheck_delays: str = "5m,1h,24h"
    unknown_retry_horizon_hours: float = Field(default=20.0, gt=0)

    mail_url: str = f"file://{(Path.cwd() / VAR_DIR / 'mail').as_posix()}"
    mail_from: str = "billing@example.com"
    merchant_name: str = "Example Merchant"
    support_email: str = "support@example.com"
    send_receipts: bool = True
    # A notice this many days before each renewal (off by default); the card-expiry warning
    # goes out in the same window whatever this switch says.
    upcoming_renewal_notice: bool = False
    upcoming_notice_days: int = Field(default=7, ge=1)

    # Prometheus multiprocess files of every process on this host (docs/metrics.md); each
    # boot gets its own subfolder. Empty: each process keeps its metrics to itself.
    # PROMETHEUS_MULTIPROC_DIR, when set, wins and is used as is.
    metrics_dir: str = f"{VAR_DIR}/metrics"

    sweep_interval: float = Field(default=30.0, gt=0)
    # Redis only: how long an unacknowledged message stays invisible before Redis hands it
    # out again. Far above the task time limits in production (checked); fault tests set
    # it short to make a slow charge's message be delivered twice.
    broker_visibility_timeout: int = Field(default=3600, ge=1)
    lease_seconds: int = Field(default=300, ge=10)
    max_charge_amount: int = Field(default=1_000_000, gt=0)
    trust_idempotency_keys: bool = False
    dunning_retry_days: str = "3,5,7"
    final_action: Literal["canceled", "unpaid"] = "canceled"
    # After a 402: reminder emails this many days later, and the final action after
    # action_expire_days if the customer never pays on-session.
    action_reminder_days: str = "3,6"
    action_expire_days: int = Field(default=7, ge=1)
    catch_up: Literal["latest", "all"] = "latest"
    merchant_of_record: bool = False
    checkout_success_url: str = "http://127.0.0.1:8000/billing/success"
    checkout_cancel_url: str = "http://127.0.0.1:8000/billing/cancel"
    # The merchant's backend, told of every subscription status change, refund and dispute
    # (docs/merchant-webhooks.md). None: no event is written at all.
    merchant_webhook_url: str | None = None
    # Signs every delivery; there is no default, so a URL without a secret stops start-up.
    merchant_webhook_secret: SecretStr = SecretStr("")
    # After a failed delivery, wait these in turn; one more failure then marks it failed.
    merchant_webhook_retry_delays: str = "1m,5m,30m,2h,12h,24h"
    merchant_webhook_timeout: float = Field(default=10.0, gt=0)
    # Fault testing only (renewals.crashpoints): points where the process kills itself. Read
    # here so a typo fails at start-up and production refuses it; never set in production.
    crash_points: str = ""

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        _check_sql_driver(value)
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in BROKER_SCHEMES:
            raise ValueError(
                f"scheme must be one of {', '.join(BROKER_SCHEMES)} (e.g. redis://host:6379/0)"
            )
        try:
            parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
        except ValueError:
            raise ValueError("the port is not a number") from None
        if parts.scheme.startswith("sqla+"):
            _check_sql_driver(value.removeprefix("sqla+"), "sqla+")
        return value

    @field_validator("faststar_base_url", "checkout_success_url", "checkout_cancel_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("mail_url")
    @classmethod
    def _mail_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in MAIL_SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(MAIL_SCHEMES)}")
        return value

    @field_validator("faststar_api_key")
    @classmethod
    def _api_key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("crash_points")
    @classmethod
    def _crash_points(cls, value: str) -> str:
        parse_crash_points(value)  # raises ValueError naming the unknown point
        return value

    @field_validator("unknown_recheck_delays")
    @classmethod
    def _durations(cls, value: str) -> str:
        delays = parse_durations(value, name="delays")
        if not delays:
            raise ValueError("give at least one delay, e.g. 5m,1h,24h")
        UnknownRecheckPolicy(delays=delays)  # raises ValueError: zero or decreasing delays
        return value

    @field_validator("merchant_webhook_url")
    @classmethod
    def _optional_http_url(cls, value: str | None) -> str | None:
        if not value:  # RENEWALS_MERCHANT_WEBHOOK_URL= (empty) means none
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("merchant_webhook_retry_delays")
    @classmethod
    def _retry_delays(cls, value: str) -> str:
        delays = parse_durations(value, name="delays")
        if any(delay <= timedelta(0) for delay in delays):
            raise ValueError("every delay must be positive")
        return value

    @model_validator(mode="after")
    def _merchant_webhook_signed(self) -> Settings:
        """A URL needs a secret (production lists this with its other problems)."""
        if self.env == "production":
            return self
        if self.merchant_webhook_url and not self.merchant_webhook_secret.get_secret_value():
            raise PydanticCustomError(
                "unsigned_merchant_webhooks",
                f"{ENV_PREFIX}MERCHANT_WEBHOOK_SECRET: is empty, but "
                f"{ENV_PREFIX}MERCHANT_WEBHOOK_URL is set; every event is signed with it, so "
                "set it to a long random string and share it with the merchant's backend",
            )
        return self

    @field_validator("dunning_retry_days", "action_reminder_days")
    @classmethod
    def _day_list(cls, value: str) -> str:
        parse_day_list(value, name="days")  # raises ValueError with the reason
        return value

    @model_validator(mode="after")
    def _safe_for_production(self) -> Settings:
        """In production, refuse the published defaults and (unless allowed) test keys.

        Every problem is reported at once, each naming the variable to set; the values
        themselves are never echoed, since they may be real secrets pasted in the wrong place.
        """
        if self.env != "production":
            return self
        problems = production_problems(self)
        if problems:
            # A custom error keeps pydantic's "Value error, " prefix off the message, which
            # load_settings prints line by line.
            raise PydanticCustomError(
                "unsafe_production", "{problems}", {"problems": "\n".join(problems)}
            )
        return self

    @property
    def faststar_call_bound_s(self) -> float:
        """The longest one FastStar call can take by the client's timeouts: waiting for a
        pooled connection and connecting (each the connect timeout), writing the request
        and reading the answer (each the read timeout). Under the threads pool nothing else
        stops a hung call, so this should stay well below the renewal's lease."""
        return 2 * self.faststar_connect_timeout + 2 * self.faststar_read_timeout

    @property
    def dunning_days(self) -> tuple[int, ...]:
        return parse_day_list(self.dunning_retry_days, name="retry days")

    @property
    def effective_log_format(self) -> Literal["console", "json"]:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.env == "production" else "console"

    def webhook_secrets(self) -> tuple[str, ...]:
        """The current webhook secret(s) first, then any old ones still valid during a
        rotation. Both variables may list several secrets, comma-separated."""
        listed = ",".join(
            (
                self.faststar_webhook_secret.get_secret_value(),
                self.faststar_webhook_secrets_old.get_secret_value(),
            )
        )
        return tuple(dict.fromkeys(s.strip() for s in listed.split(",") if s.strip()))

    @property
    def merchant_retry_delays(self) -> tuple[timedelta, ...]:
        return parse_durations(self.merchant_webhook_retry_delays, name="retry delays")

    @property
    def unknown_recheck(self) -> tuple[timedelta, ...]:
        return parse_durations(self.unknown_recheck_delays, name="recheck delays")

    @property
    def unknown_recheck_policy(self) -> UnknownRecheckPolicy:
        """The janitor's backoff and the same-key retry horizon for unknown outcomes."""
        return UnknownRecheckPolicy(
            delays=self.unknown_recheck,
            retry_horizon=timedelta(hours=self.unknown_retry_horizon_hours),
        )

    def secrets(self) -> tuple[str, ...]:
        """Secret values the log redactor must never let through."""
        values = [
            self.faststar_api_key.get_secret_value(),
            *self.webhook_secrets(),
            self.merchant_webhook_secret.get_secret_value(),
        ]
        mail_password = urlsplit(self.mail_url).password
        if mail_password:  # the SMTP password inside RENEWALS_MAIL_URL
            values += [mail_password, unquote(mail_password)]
        return tuple(v for v in values if len(v) >= 6)


def _check_sql_driver(url: str, prefix: str = "") -> None:
    """Refuse a URL whose SQLAlchemy driver is not installed, naming the one that is.

    ``postgresql://`` means psycopg2 to SQLAlchemy, which we do not install (psycopg 3 is):
    without this check it fails at the first query with "No module named 'psycopg2'"."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError("is not a valid database URL") from None
    try:
        parsed.get_dialect()
    except NoSuchModuleError:  # an ArgumentError too: caught first
        raise ValueError(
            f"unknown driver {parsed.drivername!r}; use {prefix}sqlite:/// or "
            f"{prefix}postgresql+psycopg://"
        ) from None
    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is None:
        raise ValueError(
            f"{prefix}postgresql:// names no driver (SQLAlchemy then wants psycopg2, which is "
            f"not installed); write {prefix}postgresql+psycopg://"
        )


def production_problems(settings: Settings) -> list[str]:
    """What makes ``settings`` unsafe to run in production, one line per variable."""
    problems: list[str] = []
    secret_var = f"{ENV_PREFIX}FASTSTAR_WEBHOOK_SECRET"
    current = [s.strip() for s in settings.faststar_webhook_secret.get_secret_value().split(",")]
    current = [s for s in current if s]
    if not current:
        problems.append(
            f"{secret_var}: is empty, so no webhook could be verified; set {secret_var} "
            "to the signing secret from your FastStar dashboard"
        )
    elif PUBLISHED_WEBHOOK_SECRETS.intersection(current):
        problems.append(
            f"{secret_var}: the published default cannot be used in production (anyone "
            f"could sign webhooks with it); set {secret_var} to the signing secret from "
            "your FastStar dashboard"
        )
    old_var = f"{ENV_PREFIX}FASTSTAR_WEBHOOK_SECRETS_OLD"
    old = settings.faststar_webhook_secrets_old.get_secret_value().split(",")
    if PUBLISHED_WEBHOOK_SECRETS.intersection(s.strip() for s in old):
        problems.append(
            f"{old_var}: lists a published default secret, which anyone could sign "
            f"webhooks with; remove it from {old_var}"
        )
    merchant_var = f"{ENV_PREFIX}MERCHANT_WEBHOOK_SECRET"
    merchant_secret = settings.merchant_webhook_secret.get_secret_value().strip()
    if settings.merchant_webhook_url and merchant_secret in PUBLISHED_WEBHOOK_SECRETS:
        problems.append(
            f"{merchant_var}: a published secret cannot sign events in production (anyone "
            f"could forge them); set {merchant_var} to a long random string"
        )
    elif settings.merchant_webhook_url and len(merchant_secret) < MIN_MERCHANT_SECRET_LEN:
        problems.append(
            f"{merchant_var}: is shorter than {MIN_MERCHANT_SECRET_LEN} characters; set "
            f"{merchant_var} to a long random string (e.g. `openssl rand -hex 32`)"
        )
    key_var = f"{ENV_PREFIX}FASTSTAR_API_KEY"
    api_key = settings.faststar_api_key.get_secret_value().strip()
    if api_key == DEFAULT_API_KEY:
        problems.append(
            f"{key_var}: the default cannot be used in production; set {key_var} "
            "to your merchant secret key from the FastStar dashboard"
        )
    elif api_key.startswith(TEST_KEY_PREFIX) and not settings.allow_test_keys:
        problems.append(
            f"{key_var}: is a test key ({TEST_KEY_PREFIX}…), which charges no real card; "
            f"set {key_var} to your live secret key, or set "
            f"{ENV_PREFIX}ALLOW_TEST_KEYS=true if this deployment is meant to use test mode"
        )
    vt_var = f"{ENV_PREFIX}BROKER_VISIBILITY_TIMEOUT"
    if settings.broker_visibility_timeout <= TASK_TIME_LIMIT_S:
        problems.append(
            f"{vt_var}: must exceed the task time limit ({TASK_TIME_LIMIT_S} s), or a message "
            f"is handed out again while its task still runs; leave {vt_var} unset (3600)"
        )
    if settings.crash_points.strip():
        crash_var = f"{ENV_PREFIX}CRASH_POINTS"
        problems.append(
            f"{crash_var}: arms crash points, which exist only for fault testing; unset {crash_var}"
        )
    return problems


def load_settings() -> Settings:
    """Read and validate the environment, raising :class:`ConfigError` with every problem."""
    try:
        return Settings()
    except ValidationError as exc:
        lines: list[str] = []
        for error in exc.errors():
            if not error["loc"]:  # a model-level check: its lines already name the variables
                lines.extend(f"  {line}" for line in error["msg"].splitlines())
                continue
            name = ENV_PREFIX + "_".join(str(p) for p in error["loc"]).upper()
            # pydantic prefixes our validators' messages with "Value error, ": noise here.
            lines.append(f"  {name}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, loaded on first use."""
    return load_settings()
