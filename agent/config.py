"""The agent's configuration: layered, validated, with admin policy on top.

Layers, later wins: built-in defaults, the machine-wide file (``<site config dir>/config.json``),
the user's file (``<user config dir>/config.json``, or ``--config FILE`` /
``THAICARD_CONFIG``), ``THAICARD_*`` environment variables, command-line flags, and last the
admin policy (Linux ``/etc/thaicard-agent/policy.json``, Windows
``HKLM\\Software\\Policies\\ThaiCardAgent``, macOS managed preferences
``th.thaicard.agent``). A key set by policy cannot be changed by the user in any way.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from .errors import AgentError
from .readers.factory import BACKENDS

log = logging.getLogger(__name__)

APP_NAME = "thaicard-agent"
CONFIG_FILE = "config.json"
DEFAULT_PORT = 8189
# The NHSO "New Authen Code" page: the one page every hospital uses with the agent.
NHSO_AUTHEN_ORIGIN = "https://authenservice.nhso.go.th"
DEFAULT_ALLOWED_ORIGINS = (NHSO_AUTHEN_ORIGIN,)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

LINUX_POLICY_FILE = Path("/etc/thaicard-agent/policy.json")
WINDOWS_POLICY_KEY = r"Software\Policies\ThaiCardAgent"
MACOS_POLICY_FILE = Path("/Library/Managed Preferences/th.thaicard.agent.plist")


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
    # Where each key's value came from (default, site, user, env, cli, policy).
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def origins_for(self, port: int) -> frozenset[str]:
        """Allowed origins: the configured ones plus the agent's own status page."""
        own = {f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}"}
        return frozenset(self.allowed_origins) | own

    @property
    def policy_keys(self) -> list[str]:
        return sorted(k for k, src in self.sources.items() if src == "policy")

    def public_view(self) -> dict[str, Any]:
        """What /v1/status shows: nothing secret lives in this object."""
        return {"port": self.port, "backend": self.backend,
                "defaultTerminal": self.default_terminal,
                "allowedOrigins": list(self.allowed_origins), "readPhoto": self.read_photo,
                "readTimeout": self.read_timeout, "logLevel": self.log_level,
                "policyKeys": [KEY_NAMES[k] for k in self.policy_keys]}


# JSON / policy key -> field; environment variable = THAICARD_ + upper snake case of the field.
KEYS: dict[str, str] = {
    "port": "port", "backend": "backend", "defaultTerminal": "default_terminal",
    "allowedOrigins": "allowed_origins", "readPhoto": "read_photo",
    "readTimeout": "read_timeout", "heartbeatInterval": "heartbeat_interval",
    "logLevel": "log_level", "logDir": "log_dir",
}
KEY_NAMES = {v: k for k, v in KEYS.items()}
ENV_PREFIX = "THAICARD_"


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def normalize_origin(value: str) -> str:
    """``scheme://host[:port]`` exactly as a browser sends it in ``Origin``; else ConfigInvalid."""
    text = str(value).strip()
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


def coerce(name: str, value: Any) -> Any:
    """A value from JSON, the environment, the registry or a flag, as the field's type."""
    try:
        if name == "allowed_origins":
            return tuple(dict.fromkeys(normalize_origin(v) for v in _split_list(value)))
        if name == "read_photo":
            if isinstance(value, bool):
                return value
            if isinstance(value, int):        # a REG_DWORD policy value
                return bool(value)
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if name == "port":
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if name in ("read_timeout", "heartbeat_interval"):
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if name == "log_level":
            return str(value).strip().upper()
        if name == "log_dir":
            return Path(str(value)).expanduser() if str(value).strip() else None
        if name == "default_terminal":
            return str(value).strip() or None
        return str(value).strip()
    except (TypeError, ValueError):
        raise ConfigInvalid(f"{KEY_NAMES.get(name, name)}: {value!r} is not valid") from None


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
    if env.get("THAICARD_CONFIG"):
        return Path(env["THAICARD_CONFIG"])
    if env.get("THAICARD_CONFIG_DIR"):
        return Path(env["THAICARD_CONFIG_DIR"]) / CONFIG_FILE
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / CONFIG_FILE


def site_config_path() -> Path:
    return Path(platformdirs.site_config_dir(APP_NAME, appauthor=False)) / CONFIG_FILE


def read_json_file(path: Path, error: type[AgentError] | None = None) -> dict[str, Any]:
    """A settings file's JSON object; {} when absent; ``error`` (ConfigInvalid) when broken."""
    error = error or ConfigInvalid
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{path} must hold a JSON object")
    return data


def _from_mapping(layer: Mapping[str, Any], source: str) -> dict[str, Any]:
    """JSON/policy keys -> fields. Keys are matched without regard to case (registry style)."""
    by_folded = {k.lower(): v for k, v in KEYS.items()}
    out: dict[str, Any] = {}
    for key, value in layer.items():
        if key.startswith(("#", "_")):       # comments in JSON files
            continue
        name = by_folded.get(key.lower())
        if name is None:
            raise ConfigInvalid(f"{source}: unknown setting {key!r} "
                                f"(known: {', '.join(KEYS)})")
        out[name] = coerce(name, value)
    return out


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    return {name: coerce(name, env[env_name(name)]) for name in KEY_NAMES
            if env.get(env_name(name), "") != ""}


def read_windows_policy() -> dict[str, Any]:
    import winreg  # type: ignore[import-not-found]  # Windows only

    values: dict[str, Any] = {}
    try:
        key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, WINDOWS_POLICY_KEY)
    except OSError:
        return values
    with key:
        index = 0
        while True:
            try:
                name, value, _kind = winreg.EnumValue(key, index)
            except OSError:
                break
            values[name] = value
            index += 1
    return values


def read_macos_policy(path: Path = MACOS_POLICY_FILE) -> dict[str, Any]:
    import plistlib

    try:
        with path.open("rb") as fh:
            data = plistlib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, plistlib.InvalidFileException, ValueError) as exc:
        raise ConfigInvalid(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        return {}
    # Some MDMs copy the profile's own Payload* keys into the managed preferences.
    return {k: v for k, v in data.items() if not k.startswith("Payload")}


def read_platform_policy() -> tuple[dict[str, Any], str]:
    """The admin policy of this machine and where it was read from."""
    if sys.platform == "win32":
        return read_windows_policy(), "HKLM\\" + WINDOWS_POLICY_KEY
    if sys.platform == "darwin":
        return read_macos_policy(), str(MACOS_POLICY_FILE)
    return read_json_file(LINUX_POLICY_FILE), str(LINUX_POLICY_FILE)


def load_config(*, cli: Mapping[str, Any] | None = None, config_file: Path | None = None,
                env: Mapping[str, str] | None = None,
                site_path: Path | None = None,
                policy: Callable[[], tuple[dict[str, Any], str]] = read_platform_policy,
                ) -> Config:
    """Merge every layer. ``cli`` holds field names (``None`` = flag not given);
    ``cli["extra_origins"]`` adds origins to the list instead of replacing it."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def apply(layer: dict[str, Any], source: str) -> None:
        values.update(layer)
        sources.update({k: source for k in layer})

    site = site_path if site_path is not None else site_config_path()
    apply(_from_mapping(read_json_file(site), str(site)), "site")
    user = config_file or user_config_path(env)
    if config_file is not None and not config_file.exists():
        raise ConfigInvalid(f"config file {config_file} does not exist")
    apply(_from_mapping(read_json_file(user), str(user)), "user")
    apply(_from_env(env), "env")

    cli = dict(cli or {})
    extra = [normalize_origin(o) for o in cli.pop("extra_origins", None) or []]
    apply({k: (coerce(k, v) if k in KEY_NAMES else v) for k, v in cli.items()
           if v is not None and k in KEY_NAMES}, "cli")
    if extra:
        base = values.get("allowed_origins", DEFAULT_ALLOWED_ORIGINS)
        values["allowed_origins"] = tuple(dict.fromkeys((*base, *extra)))
        sources["allowed_origins"] = "cli"

    policy_values, policy_source = policy()
    locked = _from_mapping(policy_values, policy_source)
    for name in locked:
        if sources.get(name) in ("user", "env", "cli") and values.get(name) != locked[name]:
            log.warning("setting %s is fixed by the admin policy (%s); the %s value is ignored",
                        KEY_NAMES[name], policy_source, sources[name])
    apply(locked, "policy")

    for f in fields(Config):
        if f.name != "sources":
            sources.setdefault(f.name, "default")
    return validate(replace(Config(**values), sources=sources))
