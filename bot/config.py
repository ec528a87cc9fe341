"""Settings: read once at start from the environment and an optional env file, then passed in."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PREFIX = "THREADLINE_"
DEFAULT_ENV_FILE = "threadline.env"
DEFAULT_AGENTS_FILE = "threadline.yml"

# GitHub caps webhook payloads at 25 MB and GitLab's default limit is the same order;
# anything larger cannot be a genuine delivery.
# https://docs.github.com/en/webhooks/webhook-events-and-payloads#payload-cap
MAX_BODY_BYTES = 25 * 1024 * 1024


def default_github_graphql_url(api_url: str) -> str:
    """GraphQL beside REST: api.github.com/graphql, or HOST/api/graphql on GHES (HOST/api/v3)."""
    base = api_url.rstrip("/")
    if base.endswith("/api/v3"):
        return base.removesuffix("/v3") + "/graphql"
    return base + "/graphql"


class ConfigError(Exception):
    """The settings are unusable; `problems` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Setting:
    """One documented setting: its variable, meaning and default."""

    attr: str
    help: str
    default: str | None = None
    secret: bool = False
    group: str = "general"

    @property
    def env(self) -> str:
        return PREFIX + self.attr.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("env_file", "KEY=VALUE file read for settings (default ./threadline.env when present; --env-file wins)"),
    Setting("database_url", "SQLAlchemy URL of the database", "sqlite:///threadline.db"),
    Setting("host", "address the web server listens on", "127.0.0.1"),
    Setting("port", "port the web server listens on", "3000"),
    Setting("public_url", "address hosts and browsers reach this server at (webhook and set-up URLs; default: the address the set-up page was opened at)"),
    Setting("auto_migrate", "bring the database schema up to date when serving", "true"),
    Setting("config", "agents file (threadline.yml); default ./threadline.yml when present, else the built-in echo agent"),
    Setting("log_level", "DEBUG, INFO, WARNING or ERROR", "INFO"),
    Setting("log_format", "text or json", "text"),
    Setting("bot_name", "the bot's user name(s), comma-separated; mentions use the first", "threadline"),
    Setting("github_webhook_secret", "secret GitHub signs deliveries with", secret=True, group="github"),
    Setting("github_app_id", "GitHub App id", group="github"),
    Setting("github_private_key", "GitHub App private key (PEM, inline)", secret=True, group="github"),
    Setting("github_private_key_path", "file holding the GitHub App private key", group="github"),
    Setting("github_token", "token for single-repository use instead of an App", secret=True, group="github"),
    Setting("github_api_url", "GitHub REST base URL (GHES: https://HOST/api/v3)", "https://api.github.com", group="github"),
    Setting("github_graphql_url", "GitHub GraphQL URL (default: from the REST URL; GHES: https://HOST/api/graphql)", group="github"),
    Setting("github_redelivery_minutes", "ask GitHub again for failed deliveries this often (0: never; App only)", "10", group="github"),
    Setting("github_poll_seconds", "read the App's deliveries from GitHub's API this often, for a server GitHub cannot reach (0: never; App only)", "0", group="github"),
    Setting("gitlab_url", "GitLab base URL (self-managed: https://HOST)", "https://gitlab.com", group="gitlab"),
    Setting("gitlab_token", "GitLab project, group or personal access token", secret=True, group="gitlab"),
    Setting("gitlab_webhook_token", "secret token GitLab sends in X-Gitlab-Token", secret=True, group="gitlab"),
    Setting("operator_token", "token for the inspector pages and API with close/purge (default: a random one the first `serve` makes, prints and keeps in the env file, owner-only)", secret=True, group="inspector"),
    Setting("viewer_token", "token for read-only access to the inspector pages and API", secret=True, group="inspector"),
    Setting("mcp_token", "token `threadline mcp` (MCP over stdio) acts as: a database token or a bootstrap one; --token overrides it", secret=True, group="inspector"),
    Setting("playground", "serve the playground host (/playground): a pull request in Threadline's own database to try sessions on", "false", group="playground"),
    Setting("playground_secret", "secret the playground signs its deliveries with (default: generated once, kept in the database)", secret=True, group="playground"),
    Setting("host_timeout_seconds", "how long one call to a host's API may take", "30", group="hosts"),
    Setting("outbox_min_interval_seconds", "least time between two writes to one installation", "1.0", group="hosts"),
    Setting("outbox_max_attempts", "tries before a write to a host is marked failed", "8", group="hosts"),
    Setting("outbox_retry_seconds", "first retry delay of a write; it doubles per try, at most one hour", "60", group="hosts"),
    Setting("outbox_lease_seconds", "how long a write being sent stays claimed without a heartbeat (renewed every third of it); a dead sender's thread resumes after this", "15", group="hosts"),
    Setting("worker_poll_seconds", "how often an idle worker looks for new deliveries", "1.0", group="worker"),
    Setting("worker_lease_seconds", "how long a claimed delivery stays claimed without a heartbeat", "60", group="worker"),
    Setting("delivery_max_attempts", "tries before a delivery is marked failed", "5", group="worker"),
    Setting("delivery_retry_seconds", "first retry delay; it doubles per try, at most one hour", "10", group="worker"),
    Setting("order_hold_seconds", "how long a new delivery waits before it is handled, so an earlier event of its thread that arrives a little later goes first", "1.0", group="worker"),
    Setting("metrics_address", "HOST:PORT where this process also serves /metrics without a token (the worker's only /metrics; unset: none)", group="metrics"),
    Setting("retention_delivery_body_days", "days a settled delivery keeps its headers and body (0: forever)", "7", group="retention"),
    Setting("retention_delivery_days", "days a settled delivery's row (its id, for spotting redeliveries) is kept; 0 (forever) or at least 8", "30", group="retention"),
    Setting("retention_outbox_days", "days a sent write to a host is kept (0: forever)", "30", group="retention"),
    Setting("retention_transcript_days", "days a closed session's transcript is kept (0: forever; one that may still be resumed stays)", "90", group="retention"),
    Setting("workspace_dir", "where repository mirrors and session worktrees are kept (must be traversable by the sandbox user)", "workspaces", group="workspaces"),
    Setting("workspace_quota_mb", "largest size of one repository's mirror or one worktree", "1024", group="workspaces"),
    Setting("workspace_dir_quota_mb", "largest size of the whole workspace directory", "10240", group="workspaces"),
    Setting("sandbox", "bwrap (commands run under bubblewrap) or none (unsandboxed: only on a throwaway machine)", "bwrap", group="workspaces"),
    Setting("sandbox_uid", "unprivileged user id commands run as (owns the worktrees when Threadline runs as root)", "64000", group="workspaces"),
)  # fmt: skip

_BY_ENV = {s.env: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Validated settings. Build with `load_settings`; never mutate or make global."""

    database_url: str = field(default="sqlite:///threadline.db", repr=False)
    host: str = "127.0.0.1"
    port: int = 3000
    public_url: str | None = None
    auto_migrate: bool = True
    config: str | None = None
    log_level: str = "INFO"
    log_format: str = "text"
    bot_names: tuple[str, ...] = ("threadline",)
    github_webhook_secret: str | None = field(default=None, repr=False)
    github_app_id: int | None = None
    github_private_key: str | None = field(default=None, repr=False)
    github_private_key_path: str | None = None
    github_token: str | None = field(default=None, repr=False)
    github_api_url: str = "https://api.github.com"
    github_graphql_url: str | None = None
    github_redelivery_minutes: float = 10.0
    github_poll_seconds: float = 0.0
    gitlab_url: str = "https://gitlab.com"
    gitlab_token: str | None = field(default=None, repr=False)
    gitlab_webhook_token: str | None = field(default=None, repr=False)
    operator_token: str | None = field(default=None, repr=False)
    viewer_token: str | None = field(default=None, repr=False)
    mcp_token: str | None = field(default=None, repr=False)
    playground: bool = False
    playground_secret: str | None = field(default=None, repr=False)
    host_timeout_seconds: float = 30.0
    outbox_min_interval_seconds: float = 1.0
    outbox_max_attempts: int = 8
    outbox_retry_seconds: float = 60.0
    outbox_lease_seconds: float = 15.0
    worker_poll_seconds: float = 1.0
    worker_lease_seconds: float = 60.0
    delivery_max_attempts: int = 5
    delivery_retry_seconds: float = 10.0
    order_hold_seconds: float = 1.0
    metrics_address: str | None = None
    retention_delivery_body_days: float = 7.0
    retention_delivery_days: float = 30.0
    retention_outbox_days: float = 30.0
    retention_transcript_days: float = 90.0
    workspace_dir: str = "workspaces"
    workspace_quota_mb: int = 1024
    workspace_dir_quota_mb: int = 10240
    sandbox: str = "bwrap"
    sandbox_uid: int = 64000
    source_file: str | None = None
    unknown_variables: tuple[str, ...] = ()

    @property
    def github_graphql_endpoint(self) -> str:
        """GraphQL lives beside REST: api.github.com/graphql, or HOST/api/graphql on GHES."""
        return self.github_graphql_url or default_github_graphql_url(self.github_api_url)

    @property
    def github_enabled(self) -> bool:
        return any(
            (
                self.github_webhook_secret,
                self.github_app_id,
                self.github_private_key,
                self.github_token,
            )
        )

    @property
    def gitlab_enabled(self) -> bool:
        return bool(self.gitlab_token or self.gitlab_webhook_token)

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts these settings set up, by host key ("local": the playground, when on)."""
        enabled = (
            ("github", self.github_enabled),
            ("gitlab", self.gitlab_enabled),
            ("local", self.playground),  # the playground's host key
        )
        return tuple(name for name, on in enabled if on)

    def serving_problems(self) -> list[str]:
        """Reasons the web server must not start with these settings (insecure set-ups)."""
        problems = []
        if self.github_enabled and not self.github_webhook_secret:
            problems.append(
                "GitHub is configured but THREADLINE_GITHUB_WEBHOOK_SECRET is not set: "
                "without it anyone could post forged events. Set it to the App's webhook secret."
            )
        if self.gitlab_enabled and not self.gitlab_webhook_token:
            problems.append(
                "GitLab is configured but THREADLINE_GITLAB_WEBHOOK_TOKEN is not set: "
                "without it anyone could post forged events. Set it to the webhook's secret token."
            )
        if self.playground and not is_loopback(self.host) and not self.operator_token:
            problems.append(
                f"the playground is on and the server listens on {self.host}, beyond this "
                "machine: anyone who reaches it could write as its users. Set "
                "THREADLINE_OPERATOR_TOKEN, or listen on 127.0.0.1."
            )
        return problems

    def warnings(self) -> list[str]:
        """Things that work but probably are not what the operator wants."""
        out = []
        if not self.github_enabled and not self.gitlab_enabled and not self.playground:
            out.append("no host is configured: both webhook endpoints answer 404")
        if self.github_webhook_secret and not (
            (self.github_app_id and self.github_private_key) or self.github_token
        ):
            out.append(
                "GitHub deliveries are accepted but Threadline cannot write back: set "
                "THREADLINE_GITHUB_APP_ID and THREADLINE_GITHUB_PRIVATE_KEY (or THREADLINE_GITHUB_TOKEN)"
            )
        if self.github_poll_seconds > 0 and not (self.github_app_id and self.github_private_key):
            out.append(
                "THREADLINE_GITHUB_POLL_SECONDS is set, but poll mode reads a GitHub App's "
                "deliveries: set THREADLINE_GITHUB_APP_ID and THREADLINE_GITHUB_PRIVATE_KEY"
            )
        if self.gitlab_webhook_token and not self.gitlab_token:
            out.append(
                "GitLab deliveries are accepted but Threadline cannot write back: "
                "set THREADLINE_GITLAB_TOKEN"
            )
        for name, value in (
            ("THREADLINE_GITHUB_WEBHOOK_SECRET", self.github_webhook_secret),
            ("THREADLINE_GITLAB_WEBHOOK_TOKEN", self.gitlab_webhook_token),
            ("THREADLINE_OPERATOR_TOKEN", self.operator_token),
            ("THREADLINE_VIEWER_TOKEN", self.viewer_token),
        ):
            if value is not None and len(value) < 16:
                out.append(f"{name} is shorter than 16 characters; use a long random value")
        if self.viewer_token and self.viewer_token == self.operator_token:
            out.append(
                "THREADLINE_VIEWER_TOKEN is the same as THREADLINE_OPERATOR_TOKEN: it signs in as operator"
            )
        if self.sandbox == "none":
            out.append(
                "THREADLINE_SANDBOX=none: agents' commands run WITHOUT a sandbox, with this "
                "worker's files and network in reach; use it only on a throwaway machine"
            )
        out.extend(f"unknown variable {name} is ignored" for name in self.unknown_variables)
        return out


def is_loopback(host: str) -> bool:
    """Whether a listen address only takes connections from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def parse_env_file(text: str, origin: str) -> dict[str, str]:
    """Parse KEY=VALUE lines (comments, blank lines, `export` and quotes allowed)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            # Never quote the line: it may be part of a pasted private key.
            raise ConfigError(
                [
                    f"{origin}:{number}: expected KEY=VALUE (a multi-line value must be on one "
                    "line with \\n, or use THREADLINE_GITHUB_PRIVATE_KEY_PATH)"
                ]
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def _int(name: str, low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{name} must be a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"{name} must be between {low} and {high}, got {value}")
        return value

    return convert


def _float(name: str, low: float) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {text!r}") from None
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
        return value

    return convert


def _bool(name: str) -> Callable[[str], bool]:
    def convert(text: str) -> bool:
        lowered = text.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"{name} must be true or false, got {text!r}")

    return convert


def _choice(name: str, *options: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text.lower() not in {o.lower() for o in options}:
            raise ValueError(f"{name} must be one of {', '.join(options)}, got {text!r}")
        return text.upper() if name.endswith("LOG_LEVEL") else text.lower()

    return convert


def _url(name: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if not text.startswith(("http://", "https://")):
            raise ValueError(f"{name} must start with http:// or https://, got {text!r}")
        return text.rstrip("/")

    return convert


def normalize_database_url(url: str) -> str:
    """Accept the usual PostgreSQL spellings and pick the psycopg 3 driver for them."""
    for plain in ("postgres://", "postgresql://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def safe_database_url(url: str) -> str:
    """The URL with its password hidden, fit for logs and `config check`."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


def _database_url(text: str) -> str:
    url = normalize_database_url(text)
    if not url.startswith(("sqlite://", "postgresql+psycopg://")):
        raise ValueError(
            f"THREADLINE_DATABASE_URL must be a sqlite:/// or postgresql:// URL, got {text.split(':')[0]}:..."
        )
    return url


def _bot_names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip().lstrip("@") for n in text.split(",") if n.strip())
    if not names:
        raise ValueError("THREADLINE_BOT_NAME must name at least one user")
    return names


def github_app_key(pem: str) -> rsa.RSAPrivateKey:
    """The GitHub App's private key, parsed; ValueError says what is wrong with it in
    words of ours (never quoting the key, nor the parser's message about its bytes)."""
    # GitHub hands out unencrypted RSA keys in PEM and signs App JWTs with RS256:
    # https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/managing-private-keys-for-github-apps
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except UnicodeEncodeError:
        raise ValueError("holds characters that are not ASCII, so it is not a PEM key") from None
    except TypeError:
        raise ValueError(
            "is encrypted with a passphrase; use the key file as GitHub gave it"
        ) from None
    except ValueError:
        raise ValueError(
            "cannot be read as a PEM private key (cut short, altered, or not a key)"
        ) from None
    except Exception:  # cryptography's UnsupportedAlgorithm and the like
        raise ValueError("is a kind of key this server cannot use") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("is not an RSA key (GitHub App keys are RSA, for RS256)")
    return key


def _private_key(name: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        # Env files and dashboards often carry the PEM on one line with literal \n.
        pem = text.replace("\\n", "\n").strip() + "\n"
        if not pem.startswith("-----BEGIN") or "PRIVATE KEY-----" not in pem:
            raise ValueError(f"{name} does not look like a PEM private key")
        try:
            github_app_key(pem)
        except ValueError as exc:
            raise ValueError(f"{name} {exc}") from None
        return pem

    return convert


def _delivery_days(text: str) -> float:
    # Hosts redeliver for up to 7 days (GHES; GitHub.com 3): a shorter keep would let a
    # late redelivery through as new.
    value = _float("THREADLINE_RETENTION_DELIVERY_DAYS", 0.0)(text)
    if 0 < value < 8:
        raise ValueError(
            "THREADLINE_RETENTION_DELIVERY_DAYS must be 0 (keep forever) or at least 8: "
            f"hosts redeliver for up to 7 days, got {value:g}"
        )
    return value


def _address(text: str) -> str:
    """HOST:PORT to listen on ([::1]:9100 for IPv6)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"THREADLINE_METRICS_ADDRESS must be HOST:PORT, got {text!r}")
    port_number(port, "THREADLINE_METRICS_ADDRESS")
    return text.strip()


def port_number(text: str, name: str = "THREADLINE_PORT") -> int:
    """A listen port, checked the same way wherever it comes from (a variable, --port)."""
    return _int(name, 0, 65535)(text)


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "database_url": _database_url,
    "port": port_number,
    "public_url": _url("THREADLINE_PUBLIC_URL"),
    "auto_migrate": _bool("THREADLINE_AUTO_MIGRATE"),
    "playground": _bool("THREADLINE_PLAYGROUND"),
    "log_level": _choice("THREADLINE_LOG_LEVEL", "DEBUG", "INFO", "WARNING", "ERROR"),
    "log_format": _choice("THREADLINE_LOG_FORMAT", "text", "json"),
    "bot_name": _bot_names,
    "github_app_id": _int("THREADLINE_GITHUB_APP_ID", 1, 2**63 - 1),
    "github_private_key": _private_key("THREADLINE_GITHUB_PRIVATE_KEY"),
    "github_api_url": _url("THREADLINE_GITHUB_API_URL"),
    "github_graphql_url": _url("THREADLINE_GITHUB_GRAPHQL_URL"),
    "github_redelivery_minutes": _float("THREADLINE_GITHUB_REDELIVERY_MINUTES", 0.0),
    "github_poll_seconds": _float("THREADLINE_GITHUB_POLL_SECONDS", 0.0),
    "gitlab_url": _url("THREADLINE_GITLAB_URL"),
    "host_timeout_seconds": _float("THREADLINE_HOST_TIMEOUT_SECONDS", 1.0),
    "outbox_min_interval_seconds": _float("THREADLINE_OUTBOX_MIN_INTERVAL_SECONDS", 0.0),
    "outbox_max_attempts": _int("THREADLINE_OUTBOX_MAX_ATTEMPTS", 1, 100),
    "outbox_retry_seconds": _float("THREADLINE_OUTBOX_RETRY_SECONDS", 0.0),
    "outbox_lease_seconds": _float("THREADLINE_OUTBOX_LEASE_SECONDS", 1.0),
    "worker_poll_seconds": _float("THREADLINE_WORKER_POLL_SECONDS", 0.01),
    "worker_lease_seconds": _float("THREADLINE_WORKER_LEASE_SECONDS", 1.0),
    "delivery_max_attempts": _int("THREADLINE_DELIVERY_MAX_ATTEMPTS", 1, 100),
    "delivery_retry_seconds": _float("THREADLINE_DELIVERY_RETRY_SECONDS", 0.0),
    "order_hold_seconds": _float("THREADLINE_ORDER_HOLD_SECONDS", 0.0),
    "retention_delivery_body_days": _float("THREADLINE_RETENTION_DELIVERY_BODY_DAYS", 0.0),
    "metrics_address": _address,
    "retention_delivery_days": _delivery_days,
    "retention_outbox_days": _float("THREADLINE_RETENTION_OUTBOX_DAYS", 0.0),
    "retention_transcript_days": _float("THREADLINE_RETENTION_TRANSCRIPT_DAYS", 0.0),
    "workspace_quota_mb": _int("THREADLINE_WORKSPACE_QUOTA_MB", 1, 2**31),
    "workspace_dir_quota_mb": _int("THREADLINE_WORKSPACE_DIR_QUOTA_MB", 1, 2**31),
    "sandbox": _choice("THREADLINE_SANDBOX", "bwrap", "none"),
    "sandbox_uid": _int("THREADLINE_SANDBOX_UID", 1, 2**32 - 2),
}


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | os.PathLike[str] | None = None
) -> Settings:
    """Build validated settings from `environ` (default: os.environ) over an env file.

    The env file is `env_file` when given, else THREADLINE_ENV_FILE, else
    ./threadline.env when it exists. Variables in the environment win over the file.
    Every problem is collected and raised together in one ConfigError.
    """
    environ = os.environ if environ is None else environ
    explicit = env_file or environ.get(PREFIX + "ENV_FILE")
    path = Path(explicit) if explicit else Path(DEFAULT_ENV_FILE)
    values: dict[str, str] = {}
    source_file = None
    if path.is_file():
        try:
            values.update(parse_env_file(path.read_text(encoding="utf-8"), str(path)))
        except OSError as exc:
            raise ConfigError([f"cannot read settings file {path}: {exc.strerror}"]) from exc
        source_file = str(path)
    elif explicit:
        raise ConfigError([f"settings file {path} does not exist"])
    values.update({k: v for k, v in environ.items() if k.startswith(PREFIX)})
    values.pop(PREFIX + "ENV_FILE", None)

    problems: list[str] = []
    parsed: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = values.get(setting.env)
        if raw is None or raw.strip() == "":
            continue
        convert = _CONVERTERS.get(setting.attr, str.strip)
        try:
            parsed[setting.attr] = convert(raw)
        except ValueError as exc:
            problems.append(str(exc))

    key_path = parsed.get("github_private_key_path")
    if key_path is not None:
        if "github_private_key" in parsed:
            problems.append(
                "set THREADLINE_GITHUB_PRIVATE_KEY or THREADLINE_GITHUB_PRIVATE_KEY_PATH, not both"
            )
        else:
            try:
                text = Path(key_path).expanduser().read_text(encoding="utf-8")
                parsed["github_private_key"] = _private_key(
                    f"THREADLINE_GITHUB_PRIVATE_KEY_PATH {key_path}"
                )(text)
            except OSError as exc:
                problems.append(
                    f"cannot read THREADLINE_GITHUB_PRIVATE_KEY_PATH {key_path}: {exc.strerror}"
                )
            except UnicodeDecodeError:
                problems.append(
                    f"THREADLINE_GITHUB_PRIVATE_KEY_PATH {key_path} is not text, so not a PEM key"
                )
            except ValueError as exc:
                problems.append(str(exc))
    if ("github_app_id" in parsed) != ("github_private_key" in parsed) and not problems:
        problems.append(
            "a GitHub App needs both THREADLINE_GITHUB_APP_ID and THREADLINE_GITHUB_PRIVATE_KEY"
        )
    if problems:
        raise ConfigError(problems)

    if "config" not in parsed and Path(DEFAULT_AGENTS_FILE).is_file():
        parsed["config"] = DEFAULT_AGENTS_FILE
    if "bot_name" in parsed:
        parsed["bot_names"] = parsed.pop("bot_name")
    known = {f.name for f in fields(Settings)}
    unknown = tuple(sorted(k for k in values if k not in _BY_ENV))
    return Settings(
        **{k: v for k, v in parsed.items() if k in known},
        source_file=source_file,
        unknown_variables=unknown,
    )


def mask(value: str) -> str:
    """Say that a secret is set without revealing any of it."""
    return f"set ({len(value)} characters, hidden)"


NOT_SET = "not set, optional"


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """Rows of (variable, shown value, note) for `threadline config check`: one per entry
    of SETTINGS, so the listing cannot leave a setting out."""
    rows = []
    for setting in SETTINGS:
        attr = {"bot_name": "bot_names", "env_file": "source_file"}.get(setting.attr, setting.attr)
        value: Any = getattr(settings, attr)
        if attr == "database_url":
            value = safe_database_url(value)
        convert = _CONVERTERS.get(setting.attr, str.strip)
        if value is None:
            shown, note = "-", NOT_SET
        elif setting.secret:
            shown, note = mask(str(value)), ""
        else:
            shown = ",".join(value) if isinstance(value, tuple) else str(value)
            shown = shown.lower() if isinstance(value, bool) else shown
            is_default = setting.default is not None and value == convert(setting.default)
            note = "default" if is_default else ""
        rows.append((setting.env, shown, note))
    return rows
