"""Every folder and file the agent and tray use on this machine, in one place.

The only module that asks ``platformdirs`` where things go. The test and deployment
overrides (``THAICARD_CONFIG_DIR``, ``THAICARD_DATA_DIR``, ``THAICARD_CONFIG``) are read here
once, so every caller that asks for a folder gets the same answer.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import platformdirs

APP_NAME = "thaicard-agent"

AGENT_CONFIG_FILE = "config.json"     # the agent's settings (agent/config.py)
NHSO_SETTINGS_FILE = "nhso.json"      # the NHSO settings (agent/nhso/settings.py)
TRAY_PREFS_FILE = "tray.json"         # the tray's own preferences (tray/prefs.py)
TRAY_LOCK_FILE = "tray.lock"          # one tray per session (agent/osroom: the lock itself)


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def user_config_dir(env: Mapping[str, str] | None = None) -> Path:
    """The user's settings folder (``THAICARD_CONFIG_DIR`` overrides it)."""
    override = _env(env).get("THAICARD_CONFIG_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def site_config_dir() -> Path:
    """The machine-wide settings folder an admin deploys files into."""
    return Path(platformdirs.site_config_dir(APP_NAME, appauthor=False))


def user_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the claim outbox lives (``THAICARD_DATA_DIR`` overrides it)."""
    override = _env(env).get("THAICARD_DATA_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def user_log_dir() -> Path:
    """The platform's log folder; the ``logDir`` setting replaces it (agent/config.py)."""
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def user_runtime_dir() -> Path:
    """A per-session folder for the tray's lock, created if missing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # platformdirs warns when XDG_RUNTIME_DIR is unset
        return platformdirs.user_runtime_path(APP_NAME, appauthor=False, ensure_exists=True)


def support_bundle_dir() -> Path:
    """Where the tray saves support bundles: the Desktop, where staff find them to attach."""
    desktop = Path(platformdirs.user_desktop_dir())
    return desktop if desktop.is_dir() else Path.home()


def agent_config_file(env: Mapping[str, str] | None = None) -> Path:
    """The user's agent config file: ``THAICARD_CONFIG`` names the file itself."""
    override = _env(env).get("THAICARD_CONFIG")
    if override:
        return Path(override)
    return user_config_dir(env) / AGENT_CONFIG_FILE


def site_agent_config_file() -> Path:
    return site_config_dir() / AGENT_CONFIG_FILE


def site_nhso_settings_file() -> Path:
    return site_config_dir() / NHSO_SETTINGS_FILE


def tray_prefs_file(env: Mapping[str, str] | None = None) -> Path:
    return user_config_dir(env) / TRAY_PREFS_FILE


def tray_lock_file() -> Path:
    return user_runtime_dir() / TRAY_LOCK_FILE
