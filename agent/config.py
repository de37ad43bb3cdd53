"""The agent's configuration: layered, validated, with admin policy on top.

Layers, later wins: built-in defaults, the machine-wide file (``<site config dir>/config.json``),
the user's file (``<user config dir>/config.json``, or ``--config FILE`` /
``THAICARD_CONFIG``), ``THAICARD_*`` environment variables, command-line flags, and last the
admin policy (Linux ``/etc/thaicard-agent/policy.json``, Windows
``HKLM\\Software\\Policies\\ThaiCardAgent``, macOS managed preferences
``th.thaicard.agent``). A key set by policy cannot be changed by the user in any way.

The merge itself is ``agent/layered_settings.py`` (shared with the NHSO settings); this
module holds the agent's key table, its validation and the ``Config`` it builds. Where
the files are: ``agent/paths.py``; where the policy is read from: ``agent/osroom``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import osroom, paths
from .errors import AgentError
from .layered_settings import Key, KeyTable, Layers, to_bool, to_float, to_int, to_str
from .layered_settings import read_json_file as _read_json_file
from .scopes import (
    ALL_SCOPES,
    DEFAULT_SCOPES,
    NHSO_PAGE_SCOPES,
    parse_origin_scopes,
    parse_scope_list,
)

# Values of the "backend" setting; agent/readers/factory.py builds each.
BACKENDS = ("pcsc", "demo", "auto")

log = logging.getLogger(__name__)

APP_NAME = paths.APP_NAME
CONFIG_FILE = paths.AGENT_CONFIG_FILE
DEFAULT_PORT = 8189
# The NHSO "New Authen Code" page: the one page every hospital uses with the agent.
NHSO_AUTHEN_ORIGIN = "https://authenservice.nhso.go.th"
DEFAULT_ALLOWED_ORIGINS = (NHSO_AUTHEN_ORIGIN,)
# Origins of local apps (file:// pages, Electron, sandboxed frames): never allowed by
# default, only when an admin lists them exactly.
LOCAL_APP_ORIGINS = ("null", "file://")
DEFAULT_ORIGIN_SCOPES: Mapping[str, tuple[str, ...]] = {NHSO_AUTHEN_ORIGIN: NHSO_PAGE_SCOPES}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigInvalid(AgentError):
    code = "config_invalid"


@dataclass(frozen=True)
class Config:
    port: int = DEFAULT_PORT
    backend: str = "pcsc"
    default_terminal: str | None = None
    allowed_origins: tuple[str, ...] = DEFAULT_ALLOWED_ORIGINS
    read_photo: bool = True
    read_timeout: float = 20.0
    heartbeat_interval: float = 20.0
    log_level: str = "INFO"
    log_dir: Path | None = None        # None: the platform's log dir
    # What each allowed origin may do (agent/scopes.py); others get default_scopes.
    origin_scopes: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_ORIGIN_SCOPES))
    default_scopes: tuple[str, ...] = DEFAULT_SCOPES
    # Where each key's value came from (default, site, user, env, cli, policy).
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def origins_for(self, port: int, *, loopback_v6: bool = True) -> frozenset[str]:
        """Allowed origins: the configured ones plus the agent's own status page.

        ``localhost`` and ``[::1]`` are the agent's own only while it holds ``[::1]:port``
        too (``loopback_v6``); otherwise another program could serve a page there.
        """
        return frozenset(self.allowed_origins) | own_origins(port, loopback_v6=loopback_v6)

    def scopes_for(self, origin: str, port: int, *,
                   loopback_v6: bool = True) -> frozenset[str]:
        """What an allowed ``origin`` may do; the agent's own status page may do all."""
        if origin in own_origins(port, loopback_v6=loopback_v6):
            return ALL_SCOPES
        return frozenset(self.origin_scopes.get(origin, self.default_scopes))

    @property
    def policy_keys(self) -> list[str]:
        return sorted(k for k, src in self.sources.items() if src == "policy")

    def public_view(self) -> dict[str, Any]:
        """What /v1/status shows: nothing secret lives in this object."""
        return {"port": self.port, "backend": self.backend,
                "defaultTerminal": self.default_terminal,
                "allowedOrigins": list(self.allowed_origins), "readPhoto": self.read_photo,
                "readTimeout": self.read_timeout, "logLevel": self.log_level,
                "originScopes": {o: list(s) for o, s in self.origin_scopes.items()},
                "defaultScopes": list(self.default_scopes),
                "policyKeys": [KEY_NAMES[k] for k in self.policy_keys]}


def own_origins(port: int, *, loopback_v6: bool = True) -> frozenset[str]:
    """The status page's origins on this port."""
    own = {f"http://127.0.0.1:{port}"}
    if loopback_v6:
        own |= {f"http://localhost:{port}", f"http://[::1]:{port}"}
    return frozenset(own)


def normalize_origin(value: str) -> str:
    """``scheme://host[:port]`` exactly as a browser sends it in ``Origin``; else ConfigInvalid."""
    text = str(value).strip()
    if text in LOCAL_APP_ORIGINS:
        # Local Electron / file:// pages send these; only an explicit entry lets them in
        # (docs/admin.md: any sandboxed frame of any site sends "null" too).
        return text
    if "*" in text:
        raise ConfigInvalid(f"origin {text!r}: wildcards are not allowed, list each origin")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigInvalid(f"origin {text!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigInvalid(f"origin {text!r} must be http(s)://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigInvalid(f"origin {text!r} must have no path, query or user")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def _split_list(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v).strip()]
    return [v for v in str(value).replace(",", " ").split() if v]


def _origins(value: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(normalize_origin(v) for v in _split_list(value)))


def _origin_scopes(value: Any) -> dict[str, tuple[str, ...]]:
    return {normalize_origin(origin): scopes
            for origin, scopes in parse_origin_scopes(value).items()}


def _log_dir(value: Any) -> Path | None:
    return Path(str(value)).expanduser() if str(value).strip() else None


def _optional_str(value: Any) -> str | None:
    return str(value).strip() or None


def _upper(value: Any) -> str:
    return str(value).strip().upper()


ENV_PREFIX = "THAICARD_"


def env_name(name: str) -> str:
    """The environment variable of a field: THAICARD_ + the field in upper case."""
    return ENV_PREFIX + name.upper()


def _key(json_key: str, name: str, coerce: Any, kind: str) -> Key:
    return Key(json_key, name, coerce, env=env_name(name), kind=kind)


# The agent config's keys: JSON / policy key, field, coercion. Policy keys have no prefix.
TABLE = KeyTable((
    _key("port", "port", to_int, "port number"),
    _key("backend", "backend", to_str, "backend"),
    _key("defaultTerminal", "default_terminal", _optional_str, "reader name"),
    _key("allowedOrigins", "allowed_origins", _origins, "origin list"),
    _key("readPhoto", "read_photo", to_bool, "true/false"),
    _key("readTimeout", "read_timeout", to_float, "number"),
    _key("heartbeatInterval", "heartbeat_interval", to_float, "number"),
    _key("logLevel", "log_level", _upper, "log level"),
    _key("logDir", "log_dir", _log_dir, "folder"),
    _key("originScopes", "origin_scopes", _origin_scopes,
         "map of origin to scopes (card, photo, events, nhso, claims)"),
    _key("defaultScopes", "default_scopes", parse_scope_list,
         "scope list (card, photo, events, nhso, claims)"),
), error=ConfigInvalid, policy_prefix="", fold_case=True, env_empty_is_unset=True)

# JSON / policy key -> field, and back (kept for callers of the old tables).
KEYS: dict[str, str] = {k.json: k.field for k in TABLE.keys}
KEY_NAMES = {v: k for k, v in KEYS.items()}


def coerce(name: str, value: Any) -> Any:
    """A value from JSON, the environment, the registry or a flag, as the field's type."""
    return TABLE.coerce(TABLE.by_field[name], value)


def validate(config: Config) -> Config:
    problems = []
    if not 1 <= config.port <= 65535:
        problems.append("port must be 1-65535")
    if config.backend not in BACKENDS:
        problems.append(f"backend must be one of {', '.join(BACKENDS)}")
    if not 1 <= config.read_timeout <= 300:
        problems.append("readTimeout must be 1-300 seconds")
    if not 1 <= config.heartbeat_interval <= 300:
        problems.append("heartbeatInterval must be 1-300 seconds")
    if config.log_level not in LOG_LEVELS:
        problems.append(f"logLevel must be one of {', '.join(LOG_LEVELS)}")
    if problems:
        raise ConfigInvalid("; ".join(problems))
    return config


# -- the layers ------------------------------------------------------------------------------
def user_config_path(env: Mapping[str, str]) -> Path:
    return paths.agent_config_file(env)


def site_config_path() -> Path:
    return paths.site_agent_config_file()


def read_json_file(path: Path, error: type[AgentError] | None = None) -> dict[str, Any]:
    """A settings file's JSON object; {} when absent; ``error`` (ConfigInvalid) when broken."""
    return _read_json_file(path, error or ConfigInvalid)


def read_platform_policy() -> tuple[dict[str, Any], str]:
    """The admin policy of this machine and where it was read from (agent/osroom)."""
    return osroom.current().read_policy()


def load_config(*, cli: Mapping[str, Any] | None = None, config_file: Path | None = None,
                env: Mapping[str, str] | None = None,
                site_path: Path | None = None,
                policy: Callable[[], tuple[dict[str, Any], str]] | None = None,
                ) -> Config:
    """Merge every layer. ``cli`` holds field names (``None`` = flag not given);
    ``cli["extra_origins"]`` adds origins to the list instead of replacing it."""
    env = os.environ if env is None else env
    layers = Layers(TABLE)
    layers.file(site_path if site_path is not None else site_config_path(), "site")
    if config_file is not None and not config_file.exists():
        raise ConfigInvalid(f"config file {config_file} does not exist")
    layers.file(config_file or user_config_path(env), "user")
    layers.env(env)

    cli = dict(cli or {})
    extra = [normalize_origin(o) for o in cli.pop("extra_origins", None) or []]
    layers.apply({k: coerce(k, v) for k, v in cli.items()
                  if v is not None and k in KEY_NAMES}, "cli")
    if extra:
        base = layers.values.get("allowed_origins", DEFAULT_ALLOWED_ORIGINS)
        layers.apply({"allowed_origins": tuple(dict.fromkeys((*base, *extra)))}, "cli")

    layers.policy(policy or read_platform_policy)
    sources = layers.finish(f.name for f in fields(Config) if f.name != "sources")
    return validate(replace(Config(**layers.values), sources=sources))
