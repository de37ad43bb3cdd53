"""One engine for layered settings: the agent's config and the NHSO settings alike.

Layers, later wins: built-in defaults < the machine-wide file < the user's file <
environment variables < command-line flags < the admin policy. Each kind of settings
describes its keys once, in a ``KeyTable`` (JSON key, dataclass field, how a value is
coerced, its environment variable, whether the policy may fix it); the engine merges the
layers, records where each value came from, and keeps a key fixed by the policy fixed.

The agent config and the NHSO settings share one policy source (``agent.osroom``): NHSO
keys carry a prefix there (``nhsoHcode``), so each kind takes its own keys and leaves the
other's alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic_file import read_json_object
from .errors import AgentError
from .osroom import PolicyInvalid

log = logging.getLogger(__name__)

# Where a value came from, from weakest to strongest.
SOURCES = ("default", "site", "user", "env", "cli", "policy")
USER_SOURCES = ("user", "env", "cli")       # what a policy overrides with a warning

# Prefixes of the kinds of settings that share the admin policy source with the agent
# config (whose own keys have no prefix).
POLICY_PREFIXES = ("nhso", "lanlistener")


@dataclass(frozen=True)
class Key:
    """One setting: its JSON/policy name, its field, and how a raw value becomes the field."""

    json: str
    field: str
    coerce: Callable[[Any], Any]         # raises ValueError or TypeError on a bad value
    env: str | None = None               # environment variable, None: not settable there
    policy: bool = True                  # may the admin policy fix it
    kind: str = "value"                  # for messages: "int", "number", "true/false", ...


@dataclass(frozen=True)
class KeyTable:
    """The keys of one kind of settings and how its layers are read."""

    keys: tuple[Key, ...]
    error: type[AgentError]               # raised for any bad layer or value
    policy_prefix: str = ""               # "" for the agent config, "nhso" for NHSO
    fold_case: bool = True                # file keys matched without regard to case
    env_empty_is_unset: bool = True       # THAICARD_X="" means "not set"
    by_json: dict[str, Key] = field(init=False, repr=False, compare=False)
    by_field: dict[str, Key] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_json", {k.json: k for k in self.keys})
        object.__setattr__(self, "by_field", {k.field: k for k in self.keys})

    def json_name(self, field_name: str) -> str:
        key = self.by_field.get(field_name)
        return key.json if key else field_name

    def coerce(self, key: Key, value: Any) -> Any:
        try:
            return key.coerce(value)
        except (TypeError, ValueError):
            raise self.error(f"{key.json}: {value!r} is not a valid {key.kind}") from None

    def find(self, name: str, fold: bool) -> Key | None:
        """The key a JSON or policy name means (``fold``: regardless of case), or None."""
        if not fold:
            return self.by_json.get(name)
        folded = name.lower()
        return next((k for k in self.keys if k.json.lower() == folded), None)

    def from_mapping(self, layer: Mapping[str, Any], where: str) -> dict[str, Any]:
        """A file's JSON keys as fields; keys starting with ``#`` or ``_`` are comments."""
        out: dict[str, Any] = {}
        for name, value in layer.items():
            if name.startswith(("#", "_")):
                continue
            key = self.find(name, self.fold_case)
            if key is None:
                raise self.error(f"{where}: unknown setting {name!r} "
                                 f"(known: {', '.join(self.by_json)})")
            out[key.field] = self.coerce(key, value)
        return out

    def from_env(self, env: Mapping[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self.keys:
            if key.env is None or key.env not in env:
                continue
            if self.env_empty_is_unset and env[key.env] == "":
                continue
            out[key.field] = self.coerce(key, env[key.env])
        return out

    def from_policy(self, policy: Mapping[str, Any], where: str) -> dict[str, Any]:
        """This kind's keys of the shared policy, matched without regard to case (the
        registry's value names); the other kinds' keys are theirs to check."""
        prefix = self.policy_prefix.lower()
        others = tuple(p for p in POLICY_PREFIXES if p != prefix)
        mine: dict[str, Any] = {}
        for name, value in policy.items():
            folded = name.lower()
            if name.startswith(("#", "_")) or (others and folded.startswith(others)):
                continue
            if not folded.startswith(prefix):
                continue
            mine[name[len(prefix):]] = value
        out: dict[str, Any] = {}
        for name, value in mine.items():
            key = self.find(name, True)
            if key is None or not key.policy:
                known = [self.policy_prefix + k.json[:1].upper() + k.json[1:]
                         if self.policy_prefix else k.json for k in self.keys if k.policy]
                raise self.error(f"{where}: unknown policy setting "
                                 f"{self.policy_prefix + name!r} (known: {', '.join(known)})")
            out[key.field] = self.coerce(key, value)
        return out


def read_json_file(path: Path, error: type[AgentError]) -> dict[str, Any]:
    """A settings file's JSON object; {} when absent; ``error`` when broken."""
    return read_json_object(path, error)


class Layers:
    """The merge in progress: values by field, and the source of each."""

    def __init__(self, table: KeyTable) -> None:
        self.table = table
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}

    def apply(self, layer: Mapping[str, Any], source: str) -> None:
        self.values.update(layer)
        self.sources.update({name: source for name in layer})

    def file(self, path: Path, source: str) -> None:
        self.apply(self.table.from_mapping(read_json_file(path, self.table.error), str(path)),
                   source)

    def env(self, env: Mapping[str, str]) -> None:
        self.apply(self.table.from_env(env), "env")

    def policy(self, read: Callable[[], tuple[dict[str, Any], str]]) -> None:
        """The admin policy, last: a user's value for a fixed key is dropped with a warning."""
        try:
            raw, where = read()
        except PolicyInvalid as exc:
            raise self.table.error(str(exc.detail or exc)) from None
        locked = self.table.from_policy(raw, where)
        for name, value in locked.items():
            if self.sources.get(name) in USER_SOURCES and self.values.get(name) != value:
                log.warning("setting %s is fixed by the admin policy (%s); the %s value is "
                            "ignored", self.table.json_name(name), where, self.sources[name])
        self.apply(locked, "policy")

    def finish(self, field_names: Iterable[str]) -> dict[str, str]:
        """Sources for every field, ``default`` for those no layer set."""
        for name in field_names:
            self.sources.setdefault(name, "default")
        return self.sources


def refuse_locked(table: KeyTable, changes: Iterable[str], sources: Mapping[str, str]) -> None:
    """A user's change to a key the policy fixes is refused, not silently ignored."""
    for name in changes:
        key = table.find(name, table.fold_case)
        if key is not None and sources.get(key.field) == "policy":
            raise table.error(f"{key.json} is fixed by the admin policy")


# -- coercions shared by the key tables ---------------------------------------------------------
def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):           # a REG_DWORD policy value
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    return int(value)


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


def to_str(value: Any) -> str:
    return str(value).strip()
