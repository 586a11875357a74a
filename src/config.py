"""The web app's configuration: one frozen object, built once from the environment.

Tests build ``AppConfig(...)`` directly instead of editing ``os.environ``. A malformed value fails fast with
the variable's name; every default lets ``import app`` succeed on a fresh machine.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from src.signing import SigningKey, SigningKeyError, parse_key, parse_keys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
HSTS_ONE_YEAR = 365 * 24 * 3600
MAX_TEXT = 400  # characters of a school's own next-step sentence
# A school's own page: an absolute http(s) address or a path on this site, without spaces or quotes.
_LINK = re.compile(r"(https?://[^\s\"'<>]+|/[^\s\"'<>]*)")
DEFAULT_NEXT_STEPS: dict[str, str] = {
    "needs_support": "Look at this student's recent math work this week and plan support with your school's math lead.",
    "uncertain": "Look at this student's recent math work before deciding: the prediction alone cannot tell "
    "which side of the cut they will be.",
    "on_track": "No sign of a need for support: keep an eye out as usual.",
}


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True)
class AppConfig:
    """Settings of the web app (environment variable in brackets)."""

    artifacts_dir: Path = Path("artifacts")  # ARTIFACTS_DIR
    model_uri: str | None = None  # MODEL_URI (s3://bucket/prefix); wins over ARTIFACTS_DIR when set
    model_cache_dir: Path = Path(".model-cache")  # MODEL_CACHE_DIR: where a MODEL_URI set is downloaded
    model_refresh_seconds: float = 30.0  # MODEL_REFRESH_SECONDS: check the store's pointer this often (0: never)
    log_level: str = "INFO"  # LOG_LEVEL
    max_batch: int = 10_000  # MAX_BATCH: students in one {"instances": [...]} request
    max_content_length: int = 16 * 1024 * 1024  # MAX_CONTENT_LENGTH in bytes
    body_timeout: float = 10.0  # BODY_TIMEOUT_SECONDS: a request body not whole this long after its headers: 408
    support_cut: float = 50.0  # SUPPORT_CUT: the math score below which a student needs support (0 < cut <= 100)
    # BAND_POLICY: what decides a band and the chance below the cut: "all_details" (every detail entered, the
    # default) or "scores_only" (the reading and writing scores and the course, background details at their
    # average: no band changes with gender, group, lunch or parents' education alone)
    band_policy: str = "all_details"
    metrics_enabled: bool = True  # METRICS_ENABLED: Prometheus metrics and /metrics
    drift_enabled: bool = True  # DRIFT_ENABLED: the shared window, /drift and the drift gauges
    drift_window: int = 500  # DRIFT_WINDOW: recent students kept for drift
    drift_min_samples: int = 200  # DRIFT_MIN_SAMPLES: fewer than this never reports drift
    drift_threshold: float = 0.2  # DRIFT_THRESHOLD: PSI at or above which a feature has drifted
    # REALIZED_MIN_STUDENTS: a group's realized sums reach /metrics only once this many labeled students are pooled
    realized_min_students: int = 10
    drift_dir: Path | None = None  # DRIFT_DIR: the shared window's folder (default: a fresh temp folder)
    # METRICS_TOKEN: when set, /metrics and /drift answer only "Authorization: Bearer <token>" (16+ characters)
    metrics_token: str | None = field(default=None, repr=False)
    # MODEL_VERIFY_KEYS: "<key id>:<secret>,..."; when set, only model sets signed with one of them are served
    verify_keys: tuple[SigningKey, ...] = field(default=(), repr=False)
    # API_TOKEN_SHA256: "<hex>[,<hex>...]", the SHA-256 of each API token (several at once, for rotation); when
    # set, the JSON and CSV API answer only "Authorization: Bearer <token>" (the teachers' form stays open)
    api_token_sha256: tuple[bytes, ...] = field(default=(), repr=False)
    # HSTS_MAX_AGE: seconds of Strict-Transport-Security sent on answers served over HTTPS (0: none)
    hsts_max_age: int = HSTS_ONE_YEAR
    # SIGN_IN: teachers sign in at the load balancer, which lets a request carrying a bearer token through to the
    # app instead; when on, every such request needs a token this app accepts, on every page (security.py)
    sign_in: bool = False
    # TRUSTED_HOSTS: "<host>[,<host>...]", the host names this server answers to (Flask's TRUSTED_HOSTS: any other
    # Host header is answered 400, so that nothing built from it, such as a redirect, names a client's host)
    trusted_hosts: tuple[str, ...] = ()
    # What a teacher should do for each band, shown under the band: NEXT_STEP_NEEDS_SUPPORT, NEXT_STEP_UNCERTAIN,
    # NEXT_STEP_ON_TRACK (one sentence each, at most MAX_TEXT characters)
    next_step_needs_support: str = DEFAULT_NEXT_STEPS["needs_support"]
    next_step_uncertain: str = DEFAULT_NEXT_STEPS["uncertain"]
    next_step_on_track: str = DEFAULT_NEXT_STEPS["on_track"]
    next_step_link: str | None = None  # NEXT_STEP_LINK: the school's own page on support (https://... or /path)
    next_step_link_text: str = "Our school's support plan"  # NEXT_STEP_LINK_TEXT: the words of that link
    # PROMETHEUS_URL: the Prometheus that scrapes every instance; when set, /model shows the fleet's drift and
    # real-score figures from it instead of this instance's since it started
    prometheus_url: str | None = None

    def next_step(self, band: str) -> str:
        """The next step the school set for a band (``needs_support``, ``uncertain``, ``on_track``)."""
        return {
            "needs_support": self.next_step_needs_support,
            "uncertain": self.next_step_uncertain,
            "on_track": self.next_step_on_track,
        }[band]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AppConfig:
        env = os.environ if environ is None else environ
        defaults = cls()
        level = env.get("LOG_LEVEL", defaults.log_level).upper()
        if level not in logging.getLevelNamesMapping():
            raise ConfigError(f"LOG_LEVEL must be a logging level name (DEBUG, INFO, ...), got {level!r}")
        return cls(
            artifacts_dir=Path(env.get("ARTIFACTS_DIR") or defaults.artifacts_dir),
            model_uri=env.get("MODEL_URI") or None,
            model_cache_dir=Path(env.get("MODEL_CACHE_DIR") or defaults.model_cache_dir),
            model_refresh_seconds=_float(env, "MODEL_REFRESH_SECONDS", defaults.model_refresh_seconds, minimum=0.0),
            log_level=level,
            max_batch=_int(env, "MAX_BATCH", defaults.max_batch, minimum=1),
            max_content_length=_int(env, "MAX_CONTENT_LENGTH", defaults.max_content_length, minimum=1024),
            body_timeout=_float(env, "BODY_TIMEOUT_SECONDS", defaults.body_timeout, minimum=0.1),
            support_cut=_cut(env, "SUPPORT_CUT", defaults.support_cut),
            band_policy=_choice(env, "BAND_POLICY", defaults.band_policy, BAND_POLICIES),
            metrics_enabled=_bool(env, "METRICS_ENABLED", defaults.metrics_enabled),
            drift_enabled=_bool(env, "DRIFT_ENABLED", defaults.drift_enabled),
            drift_window=_int(env, "DRIFT_WINDOW", defaults.drift_window, minimum=10),
            drift_min_samples=_int(env, "DRIFT_MIN_SAMPLES", defaults.drift_min_samples, minimum=1),
            drift_threshold=_float(env, "DRIFT_THRESHOLD", defaults.drift_threshold),
            realized_min_students=_int(env, "REALIZED_MIN_STUDENTS", defaults.realized_min_students, minimum=1),
            drift_dir=Path(env["DRIFT_DIR"]) if env.get("DRIFT_DIR") else None,
            metrics_token=_token(env, "METRICS_TOKEN"),
            verify_keys=_keys(env, "MODEL_VERIFY_KEYS"),
            api_token_sha256=_digests(env, "API_TOKEN_SHA256"),
            hsts_max_age=_int(env, "HSTS_MAX_AGE", defaults.hsts_max_age, minimum=0),
            sign_in=_bool(env, "SIGN_IN", defaults.sign_in),
            trusted_hosts=_hosts(env, "TRUSTED_HOSTS"),
            next_step_needs_support=_text(env, "NEXT_STEP_NEEDS_SUPPORT", defaults.next_step_needs_support),
            next_step_uncertain=_text(env, "NEXT_STEP_UNCERTAIN", defaults.next_step_uncertain),
            next_step_on_track=_text(env, "NEXT_STEP_ON_TRACK", defaults.next_step_on_track),
            next_step_link=_link(env, "NEXT_STEP_LINK"),
            next_step_link_text=_text(env, "NEXT_STEP_LINK_TEXT", defaults.next_step_link_text),
            prometheus_url=_server(env, "PROMETHEUS_URL"),
        )


BAND_POLICIES = ("all_details", "scores_only")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    text = " ".join(raw.split())
    if len(text) > MAX_TEXT:
        raise ConfigError(f"{name} must be at most {MAX_TEXT} characters, got {len(text)}")
    return text


def _link(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if len(raw) > MAX_TEXT or not _LINK.fullmatch(raw):
        raise ConfigError(
            f"{name} must be an http(s):// address or a path starting with /, without spaces or quotes, got {raw[:80]!r}"
        )
    return raw


_SERVER = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


def _server(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if len(raw) > MAX_TEXT or not _SERVER.fullmatch(raw):
        raise ConfigError(f"{name} must be an http:// or https:// address of a server, without a query, got {raw[:80]!r}")
    return raw.rstrip("/")


def _keys(env: Mapping[str, str], name: str) -> tuple[SigningKey, ...]:
    try:
        return parse_keys(env.get(name), name)
    except SigningKeyError as err:
        raise ConfigError(str(err)) from err


def _digests(env: Mapping[str, str], name: str) -> tuple[bytes, ...]:
    """Comma-separated SHA-256 hex digests (64 hex digits each, upper or lower case), kept as bytes."""
    raw = env.get(name) or ""
    if not raw.strip():
        return ()
    digests = []
    for position, part in enumerate(raw.split(","), start=1):
        text = part.strip().lower()
        if not SHA256_HEX.fullmatch(text):
            raise ConfigError(
                f"{name} must list the SHA-256 of each token as 64 hex digits, separated by "
                f"commas; entry {position} is not (got {len(text)} characters)"
            )
        digests.append(bytes.fromhex(text))
    if len(set(digests)) != len(digests):
        raise ConfigError(f"{name} lists the same digest twice")
    return tuple(digests)


def _cut(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not (math.isfinite(value) and 0.0 < value <= 100.0):
        raise ConfigError(f"{name} must be a score above 0 and at most 100, got {env.get(name)!r}")
    return value


HOST_NAME = re.compile(r"(\.?[A-Za-z0-9-]+)+(\.)?(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


def _hosts(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated host names (``example.org``, ``.example.org`` for its subdomains too, ``host:port``)."""
    hosts = tuple(part.strip() for part in (env.get(name) or "").split(",") if part.strip())
    for position, host in enumerate(hosts, start=1):
        if not HOST_NAME.fullmatch(host):
            raise ConfigError(f"{name} must list host names separated by commas; entry {position} ({host!r}) is not one")
    return hosts


def _token(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name) or None
    if raw is not None and (len(raw) < 16 or raw != raw.strip()):
        raise ConfigError(f"{name} must be at least 16 characters with no surrounding spaces (got {len(raw)})")
    return raw


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as err:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from err
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float | None = None) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as err:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from err
    if minimum is None and not value > 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    if minimum is not None and not value >= minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def configure_logging(level: str = "INFO") -> None:
    """Log to stdout once, at an entry point (the app factory, a command's main)."""
    root = logging.getLogger()
    if not any(getattr(h, "_student_math", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._student_math = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def cache_dir_from_env(environ: Mapping[str, str] | None = None) -> Path:
    """MODEL_CACHE_DIR: where the commands download an s3:// store's sets (the server's default too)."""
    env = os.environ if environ is None else environ
    return Path(env.get("MODEL_CACHE_DIR") or AppConfig.model_cache_dir)


def keys_from_env(environ: Mapping[str, str] | None = None) -> tuple[SigningKey | None, tuple[SigningKey, ...]]:
    """MODEL_SIGNING_KEY (sign new sets) and MODEL_VERIFY_KEYS (check sets before comparing or serving).

    The commands read them here; a malformed value raises SigningKeyError naming the variable.
    """
    env = os.environ if environ is None else environ
    raw = env.get("MODEL_SIGNING_KEY")
    signing = parse_key(raw, "MODEL_SIGNING_KEY") if raw else None
    return signing, parse_keys(env.get("MODEL_VERIFY_KEYS"), "MODEL_VERIFY_KEYS")
