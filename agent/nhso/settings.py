"""NHSO settings: who the hospital is, which NHSO zone to talk to, how the outbox behaves.

Layers, later wins: built-in defaults, the machine-wide file an admin deploys
(``<site config dir>/nhso.json``), the user's file (``<user config dir>/nhso.json``, written
by ``thaicard-agent nhso config``), then ``THAICARD_NHSO_*`` environment variables. The
token is never here: it lives in the OS keyring (``token.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from ..card.values import citizen_id_valid
from ..config import read_json_file
from ..errors import AgentError

APP_NAME = "thaicard-agent"
SETTINGS_FILE = "nhso.json"
OUTBOX_FILE = "nhso-outbox.sqlite3"


@dataclass(frozen=True)
class ZoneUrls:
    """Roots of the two NHSO services; the API paths below them are the same in every zone."""

    nhsoendpoint: str      # close claim, right-search, AuthenCode
    authencodestatus: str  # Check Authen Status

    @property
    def claim_url(self) -> str:
        return f"{self.nhsoendpoint}/api/nhso-claim-detail"

    @property
    def right_search_url(self) -> str:
        return f"{self.nhsoendpoint}/api/v2/right-search"

    @property
    def authen_code_url(self) -> str:
        return f"{self.nhsoendpoint}/api/AuthenCode"

    @property
    def authen_status_url(self) -> str:
        return f"{self.authencodestatus}/api/check-authen-status"


# The production hosts and the test-zone claim host are what public hospital code calls;
# the test-zone host for Check Authen Status is an assumption (docs/nhso.md).
ZONES: dict[str, ZoneUrls] = {
    "production": ZoneUrls("https://nhsoapi.nhso.go.th/nhsoendpoint",
                           "https://authenucws.nhso.go.th/authencodestatus"),
    "test": ZoneUrls("https://test.nhso.go.th/nhsoendpoint",
                     "https://test.nhso.go.th/authencodestatus"),
}

HCODE_RE = re.compile(r"^[0-9]{5}$")
SOURCE_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,50}$")
DUE_TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class SettingsError(AgentError):
    code = "bad_request"


@dataclass(frozen=True)
class NhsoSettings:
    hcode: str = ""
    source_id: str = ""
    recorder_pid: str = ""
    zone: str = "production"
    base_url: str = ""              # one root for both services, for a local contract server
    token_hcode: str = ""           # the hcode the stored token was issued for
    retention_days: int = 14        # sent/failed claims are purged after this (PDPA)
    due_time: str = "20:00"         # Bangkok time after which unsent claims of the day are flagged
    request_timeout: float = 15.0   # seconds, whole request
    connect_timeout: float = 5.0
    sender_concurrency: int = 4
    retry_base: float = 2.0         # first retry delay, doubled each time
    retry_max: float = 300.0
    in_doubt_delay: float = 20.0    # wait before asking NHSO whether an unanswered claim landed
    token_retry: float = 300.0      # delay after "Invalid token." (a new token wakes the sender)
    due_check_interval: float = 60.0
    coverage_cache_seconds: float = 120.0
    authen_code_api: bool = True    # confirm-save forwards to the (unverified) AuthenCode API
    config_dir: Path = field(default_factory=lambda: default_config_dir())
    data_dir: Path = field(default_factory=lambda: default_data_dir())

    @property
    def urls(self) -> ZoneUrls:
        if self.base_url:
            root = self.base_url.rstrip("/")
            return ZoneUrls(f"{root}/nhsoendpoint", f"{root}/authencodestatus")
        return ZONES[self.zone]

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / OUTBOX_FILE

    @property
    def settings_path(self) -> Path:
        return self.config_dir / SETTINGS_FILE

    def missing_for_claims(self) -> list[str]:
        """Settings a claim needs that are not set."""
        names = {"hcode": self.hcode, "sourceId": self.source_id,
                 "recorderPid": self.recorder_pid}
        return [name for name, value in names.items() if not value]

    def public_view(self) -> dict[str, Any]:
        """What the API and ``nhso show`` may print: no secrets live here by design."""
        return {"hcode": self.hcode, "sourceId": self.source_id,
                "recorderPidSet": bool(self.recorder_pid), "zone": self.zone,
                "baseUrl": self.base_url or None, "tokenHcode": self.token_hcode or None,
                "retentionDays": self.retention_days, "dueTime": self.due_time,
                "authenCodeApi": self.authen_code_api}


# JSON key / env suffix -> dataclass field. The JSON file uses NHSO's camelCase names.
KEYS: dict[str, str] = {
    "hcode": "hcode", "sourceId": "source_id", "recorderPid": "recorder_pid", "zone": "zone",
    "baseUrl": "base_url", "tokenHcode": "token_hcode", "retentionDays": "retention_days",
    "dueTime": "due_time", "requestTimeout": "request_timeout",
    "connectTimeout": "connect_timeout", "senderConcurrency": "sender_concurrency",
    "retryBase": "retry_base", "retryMax": "retry_max", "inDoubtDelay": "in_doubt_delay",
    "tokenRetry": "token_retry", "dueCheckInterval": "due_check_interval",
    "coverageCacheSeconds": "coverage_cache_seconds", "authenCodeApi": "authen_code_api",
}
ENV_PREFIX = "THAICARD_NHSO_"


def default_config_dir() -> Path:
    override = os.environ.get("THAICARD_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME,
                                                                             appauthor=False))


def default_data_dir() -> Path:
    override = os.environ.get("THAICARD_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME,
                                                                           appauthor=False))


def site_settings_path() -> Path:
    return Path(platformdirs.site_config_dir(APP_NAME, appauthor=False)) / SETTINGS_FILE


def _env_name(key: str) -> str:
    return ENV_PREFIX + re.sub(r"(?<!^)([A-Z])", r"_\1", key).upper()


def _coerce(name: str, value: Any) -> Any:
    """Convert a JSON or environment value to the field's type, or raise SettingsError."""
    kind = type(NhsoSettings.__dataclass_fields__[name].default)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value).strip()
    except (TypeError, ValueError):
        raise SettingsError(f"setting {name}: {value!r} is not a valid {kind.__name__}") from None


def validate(settings: NhsoSettings) -> NhsoSettings:
    """Raise SettingsError naming the first bad setting."""
    problems = []
    if settings.hcode and not HCODE_RE.match(settings.hcode):
        problems.append("hcode must be 5 digits")
    if settings.token_hcode and not HCODE_RE.match(settings.token_hcode):
        problems.append("tokenHcode must be 5 digits")
    if settings.source_id and not SOURCE_ID_RE.match(settings.source_id):
        problems.append("sourceId must be 1-50 letters, digits, '.', '_' or '-'")
    if settings.recorder_pid and not citizen_id_valid(settings.recorder_pid):
        problems.append("recorderPid must be a 13-digit citizen id with a valid check digit")
    if settings.zone not in ZONES:
        problems.append(f"zone must be one of {', '.join(ZONES)}")
    if settings.base_url and not re.match(r"^https?://[^\s/]+(/[^\s]*)?$", settings.base_url):
        problems.append("baseUrl must be an http(s) URL")
    if not 1 <= settings.retention_days <= 3650:
        problems.append("retentionDays must be 1-3650")
    if not DUE_TIME_RE.match(settings.due_time):
        problems.append("dueTime must be HH:MM (24 h, Bangkok time)")
    if not 1 <= settings.sender_concurrency <= 32:
        problems.append("senderConcurrency must be 1-32")
    for key in ("request_timeout", "connect_timeout", "retry_base", "retry_max",
                "token_retry", "due_check_interval"):
        if getattr(settings, key) <= 0:
            problems.append(f"{key} must be positive")
    if settings.in_doubt_delay < 0 or settings.coverage_cache_seconds < 0:
        problems.append("inDoubtDelay and coverageCacheSeconds must not be negative")
    if problems:
        raise SettingsError("; ".join(problems))
    return settings


def _apply(values: dict[str, Any], layer: dict[str, Any], source: str) -> None:
    for key, value in layer.items():
        if key not in KEYS:
            raise SettingsError(f"{source}: unknown setting {key!r}")
        values[KEYS[key]] = _coerce(KEYS[key], value)


def load_settings(*, config_dir: Path | None = None, data_dir: Path | None = None,
                  env: dict[str, str] | None = None, site_path: Path | None = None,
                  **overrides: Any) -> NhsoSettings:
    env = os.environ if env is None else env
    config_dir = config_dir or (Path(env["THAICARD_CONFIG_DIR"]) if env.get(
        "THAICARD_CONFIG_DIR") else default_config_dir())
    data_dir = data_dir or (Path(env["THAICARD_DATA_DIR"]) if env.get(
        "THAICARD_DATA_DIR") else default_data_dir())
    values: dict[str, Any] = {}
    site = site_path if site_path is not None else site_settings_path()
    _apply(values, read_json_file(site, SettingsError), str(site))
    user = config_dir / SETTINGS_FILE
    _apply(values, read_json_file(user, SettingsError), str(user))
    for key, name in KEYS.items():
        if _env_name(key) in env:
            values[name] = _coerce(name, env[_env_name(key)])
    values.update(overrides)
    return validate(NhsoSettings(config_dir=config_dir, data_dir=data_dir, **values))


def save_user_settings(settings: NhsoSettings, changes: dict[str, Any]) -> NhsoSettings:
    """Merge ``changes`` (JSON keys) into the user's settings file and return the result.

    Only the user's file is written: the site file and environment keep their say, so an
    admin's deployed values still apply to keys the user never set.
    """
    path = settings.settings_path
    current = read_json_file(path, SettingsError)
    for key, value in changes.items():
        if key not in KEYS:
            raise SettingsError(f"unknown setting {key!r}")
        if value is None or value == "":
            current.pop(key, None)
        else:
            current[key] = _coerce(KEYS[key], value)
    # Validate the merged result before touching the file.
    merged = dataclasses.replace(settings, **{KEYS[k]: v for k, v in current.items()})
    validate(merged)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent,
                                     prefix=".nhso-", suffix=".json", delete=False) as tmp:
        json.dump(current, tmp, ensure_ascii=False, indent=2, sort_keys=True)
        tmp.write("\n")
    os.replace(tmp.name, path)
    return load_settings(config_dir=settings.config_dir, data_dir=settings.data_dir)
