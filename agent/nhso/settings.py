"""NHSO settings: who the hospital is, which NHSO zone to talk to, how the outbox behaves.

Layers, later wins (``agent/layered_settings.py``): built-in defaults, the machine-wide
file an admin deploys (``<site config dir>/nhso.json``), the user's file (``<user config
dir>/nhso.json``, written by ``thaicard-agent nhso config``), ``THAICARD_NHSO_*``
environment variables, values given by the caller, and last the admin policy's ``nhso*``
keys (``nhsoHcode``, ``nhsoZone``...), which the user cannot change. The token is never
here: it lives in the OS keyring (``token.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import osroom, paths
from ..atomic_file import PRIVATE, write_atomic
from ..card.values import citizen_id_valid
from ..errors import AgentError
from ..layered_settings import (
    Key,
    KeyTable,
    Layers,
    read_json_file,
    refuse_locked,
    to_bool,
    to_float,
    to_int,
    to_str,
)
from ..osroom import PolicySource

APP_NAME = paths.APP_NAME
SETTINGS_FILE = paths.NHSO_SETTINGS_FILE
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


MAX_LOOKBACK_DAYS = 31     # one request per day: a month bounds a single lookup


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
    in_doubt_recheck: float = 30.0  # not listed: ask once more this much later before resending
    token_retry: float = 300.0      # delay after "Invalid token." (a new token wakes the sender)
    due_check_interval: float = 60.0
    coverage_cache_seconds: float = 120.0
    authen_code_api: bool = True    # confirm-save forwards to the (unverified) AuthenCode API
    # Days latest-authen-code looks back: Check Authen Status answers one day per request
    # and NHSO publishes no limit, so this bounds the requests per lookup (docs/nhso.md).
    authen_lookback_days: int = 7
    # The HIS's HTTPS endpoint listing a patient's visits of a day (visit_source.py); its
    # key lives in the keyring. Empty: only visits registered on this PC.
    visit_source_url: str = ""
    visit_source_timeout: float = 5.0
    config_dir: Path = field(default_factory=lambda: default_config_dir())
    data_dir: Path = field(default_factory=lambda: default_data_dir())
    # Where each setting came from (default, site, user, env, cli, policy).
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

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
                "authenCodeApi": self.authen_code_api,
                "visitSourceUrl": self.visit_source_url or None,
                "visitSourceTimeout": self.visit_source_timeout,
                "policyKeys": self.policy_keys}

    @property
    def policy_keys(self) -> list[str]:
        """JSON names of the settings the admin policy fixes."""
        return sorted(TABLE.json_name(k) for k, src in self.sources.items() if src == "policy")


def _env_name(key: str) -> str:
    """THAICARD_NHSO_ + the JSON key in upper snake case (``dueTime`` -> ``DUE_TIME``)."""
    return ENV_PREFIX + re.sub(r"(?<!^)([A-Z])", r"_\1", key).upper()


ENV_PREFIX = "THAICARD_NHSO_"
# In the admin policy (shared with the agent config) NHSO keys carry this prefix: nhsoHcode.
POLICY_PREFIX = "nhso"


def _key(json_key: str, name: str, *, policy: bool = True) -> Key:
    kind = type(NhsoSettings.__dataclass_fields__[name].default)
    coerce, label = {bool: (to_bool, "true/false"), int: (to_int, "int"),
                     float: (to_float, "number")}.get(kind, (to_str, "text"))
    return Key(json_key, name, coerce, env=_env_name(json_key), policy=policy, kind=label)


# The NHSO settings' keys: the JSON file uses NHSO's camelCase names.
TABLE = KeyTable((
    _key("hcode", "hcode"), _key("sourceId", "source_id"), _key("recorderPid", "recorder_pid"),
    _key("zone", "zone"), _key("baseUrl", "base_url"),
    # The hcode the user's own token was issued for: the user's, never the admin's.
    _key("tokenHcode", "token_hcode", policy=False),
    _key("retentionDays", "retention_days"), _key("dueTime", "due_time"),
    _key("requestTimeout", "request_timeout"), _key("connectTimeout", "connect_timeout"),
    _key("senderConcurrency", "sender_concurrency"), _key("retryBase", "retry_base"),
    _key("retryMax", "retry_max"), _key("inDoubtDelay", "in_doubt_delay"),
    _key("inDoubtRecheck", "in_doubt_recheck"),
    _key("tokenRetry", "token_retry"), _key("dueCheckInterval", "due_check_interval"),
    _key("coverageCacheSeconds", "coverage_cache_seconds"),
    _key("authenCodeApi", "authen_code_api"),
    _key("authenLookbackDays", "authen_lookback_days"),
    _key("visitSourceUrl", "visit_source_url"),
    _key("visitSourceTimeout", "visit_source_timeout"),
), error=SettingsError, policy_prefix=POLICY_PREFIX, fold_case=False, env_empty_is_unset=False)

# JSON key -> dataclass field (kept for callers of the old table).
KEYS: dict[str, str] = {k.json: k.field for k in TABLE.keys}
SETTING_FIELDS = tuple(KEYS.values())


def default_config_dir() -> Path:
    return paths.user_config_dir()


def default_data_dir() -> Path:
    return paths.user_data_dir()


def site_settings_path() -> Path:
    return paths.site_nhso_settings_file()


def read_platform_policy() -> tuple[dict[str, Any], str]:
    """The machine's admin policy (agent/osroom); this module takes its ``nhso*`` keys."""
    return osroom.current().read_policy()


def validate(settings: NhsoSettings) -> NhsoSettings:
    """Raise SettingsError naming the first bad setting."""
    problems = []
    if settings.hcode and not HCODE_RE.fullmatch(settings.hcode):
        problems.append("hcode must be 5 digits")
    if settings.token_hcode and not HCODE_RE.fullmatch(settings.token_hcode):
        problems.append("tokenHcode must be 5 digits")
    if settings.source_id and not SOURCE_ID_RE.fullmatch(settings.source_id):
        problems.append("sourceId must be 1-50 letters, digits, '.', '_' or '-'")
    if settings.recorder_pid and not citizen_id_valid(settings.recorder_pid):
        problems.append("recorderPid must be a 13-digit citizen id with a valid check digit")
    if settings.zone not in ZONES:
        problems.append(f"zone must be one of {', '.join(ZONES)}")
    if settings.base_url and not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", settings.base_url):
        problems.append("baseUrl must be an http(s) URL")
    if not 1 <= settings.retention_days <= 3650:
        problems.append("retentionDays must be 1-3650")
    if not DUE_TIME_RE.fullmatch(settings.due_time):
        problems.append("dueTime must be HH:MM (24 h, Bangkok time)")
    if not 1 <= settings.sender_concurrency <= 32:
        problems.append("senderConcurrency must be 1-32")
    for key in ("request_timeout", "connect_timeout", "retry_base", "retry_max",
                "token_retry", "due_check_interval"):
        if getattr(settings, key) <= 0:
            problems.append(f"{key} must be positive")
    if settings.visit_source_url and not re.fullmatch(r"https://[^\s/?#]+(/[^\s?#]*)?",
                                                      settings.visit_source_url):
        problems.append("visitSourceUrl must be an https:// URL without a query")
    if not 0 < settings.visit_source_timeout <= 60:
        problems.append("visitSourceTimeout must be more than 0 and at most 60 seconds")
    if not 1 <= settings.authen_lookback_days <= MAX_LOOKBACK_DAYS:
        problems.append(f"authenLookbackDays must be 1-{MAX_LOOKBACK_DAYS}")
    if (settings.in_doubt_delay < 0 or settings.in_doubt_recheck < 0
            or settings.coverage_cache_seconds < 0):
        problems.append("inDoubtDelay, inDoubtRecheck and coverageCacheSeconds must not be "
                        "negative")
    if problems:
        raise SettingsError("; ".join(problems))
    return settings


def load_settings(*, config_dir: Path | None = None, data_dir: Path | None = None,
                  env: Mapping[str, str] | None = None, site_path: Path | None = None,
                  policy: PolicySource | None = None, **overrides: Any) -> NhsoSettings:
    """Merge the layers; ``overrides`` (field names) are the command-line layer."""
    env = os.environ if env is None else env
    config_dir = config_dir or paths.user_config_dir(env)
    data_dir = data_dir or paths.user_data_dir(env)
    layers = Layers(TABLE)
    layers.file(site_path if site_path is not None else site_settings_path(), "site")
    layers.file(config_dir / SETTINGS_FILE, "user")
    layers.env(env)
    layers.apply(overrides, "cli")
    layers.policy(policy or read_platform_policy)
    sources = layers.finish(SETTING_FIELDS)
    return validate(NhsoSettings(config_dir=config_dir, data_dir=data_dir, sources=sources,
                                 **layers.values))


def save_user_settings(settings: NhsoSettings, changes: dict[str, Any]) -> NhsoSettings:
    """Merge ``changes`` (JSON keys) into the user's settings file and return the result.

    Only the user's file is written: the site file and environment keep their say, so an
    admin's deployed values still apply to keys the user never set. A key the admin
    policy fixes is refused.
    """
    path = settings.settings_path
    current = read_json_file(path, SettingsError)
    refuse_locked(TABLE, [k for k, v in changes.items() if v is not None and v != ""],
                  settings.sources)
    for key, value in changes.items():
        if key not in TABLE.by_json:
            raise SettingsError(f"unknown setting {key!r}")
        if value is None or value == "":
            current.pop(key, None)
        else:
            current[key] = TABLE.coerce(TABLE.by_json[key], value)
    # Validate the merged result before touching the file.
    merged = dataclasses.replace(settings, **TABLE.from_mapping(current, str(path)))
    validate(merged)
    write_atomic(path, json.dumps(current, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
                 mode=PRIVATE)
    return load_settings(config_dir=settings.config_dir, data_dir=settings.data_dir)
