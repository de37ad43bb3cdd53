"""Settings of the LAN listener: off unless an admin turns it on.

Layers (later wins): defaults, the machine-wide file ``<site config dir>/lan-listener.json``,
``THAICARD_LAN_*`` environment variables, then the admin policy with a ``lanListener``
prefix (``lanListenerEnabled``). There is no per-user file: opening a port on the
hospital network is an admin's decision. Merged by ``agent/layered_settings.py``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import osroom, paths
from ..config import DEFAULT_PORT
from ..errors import AgentError
from ..layered_settings import Key, KeyTable, Layers, to_bool, to_int

SITE_FILE = "lan-listener.json"
POLICY_PREFIX = "lanListener"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class LanSettingsInvalid(AgentError):
    code = "config_invalid"


def _list(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    return tuple(str(v).strip() for v in items if str(v).strip())


def _addresses(value: Any) -> tuple[str, ...]:
    """Addresses to listen on: literal IPs of this workstation, never "any"."""
    out = []
    for text in _list(value):
        ip = ipaddress.ip_address(text)          # ValueError: not an address
        if ip.is_unspecified:
            raise ValueError(f"{text} listens on every interface; list the LAN address")
        out.append(str(ip))
    return tuple(dict.fromkeys(out))


def _clients(value: Any) -> tuple[str, ...]:
    """HIS servers allowed in: addresses or networks (10.0.5.20, 10.0.5.0/28)."""
    out = []
    for text in _list(value):
        net = ipaddress.ip_network(text, strict=False)
        if net.prefixlen == 0:
            raise ValueError(f"{text} would allow every address")
        out.append(str(net))
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class LanSettings:
    enabled: bool = False
    addresses: tuple[str, ...] = ()
    port: int = DEFAULT_PORT            # the NHSO agent's port: HIS code works unchanged
    clients: tuple[str, ...] = ()
    photo: bool = False                 # the photo is personal data HIS servers rarely need
    rate_per_minute: int = 60           # per client address
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def networks(self) -> tuple[Network, ...]:
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.clients)

    def allows(self, peer: str) -> bool:
        try:
            ip: Address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        mapped = getattr(ip, "ipv4_mapped", None)
        ip = mapped or ip
        return any(ip in net for net in self.networks)

    def public_view(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "addresses": list(self.addresses), "port": self.port,
                "clients": list(self.clients), "photo": self.photo,
                "ratePerMinute": self.rate_per_minute,
                "policyKeys": sorted(TABLE.json_name(k) for k, s in self.sources.items()
                                     if s == "policy")}


def _key(json_key: str, name: str, coerce: Callable[[Any], Any], kind: str) -> Key:
    env = "THAICARD_LAN_" + "".join("_" + c if c.isupper() else c.upper() for c in json_key)
    return Key(json_key, name, coerce, env=env, kind=kind)


TABLE = KeyTable((
    _key("enabled", "enabled", to_bool, "true/false"),
    _key("addresses", "addresses", _addresses, "list of IP addresses of this computer"),
    _key("port", "port", to_int, "port"),
    _key("clients", "clients", _clients, "list of server addresses or networks"),
    _key("photo", "photo", to_bool, "true/false"),
    _key("ratePerMinute", "rate_per_minute", to_int, "int"),
), error=LanSettingsInvalid, policy_prefix=POLICY_PREFIX)


def validate(settings: LanSettings) -> LanSettings:
    if not 1 <= settings.port <= 65535:
        raise LanSettingsInvalid("lan-listener port must be 1-65535")
    if not 1 <= settings.rate_per_minute <= 6000:
        raise LanSettingsInvalid("lan-listener ratePerMinute must be 1-6000")
    if settings.enabled and not settings.addresses:
        raise LanSettingsInvalid("lan-listener: enabled needs the workstation's LAN "
                                 "address(es) in addresses (never every interface)")
    if settings.enabled and not settings.clients:
        raise LanSettingsInvalid("lan-listener: enabled needs the HIS server address(es) "
                                 "in clients")
    return settings


def read_platform_policy() -> tuple[dict[str, Any], str]:
    return osroom.current().read_policy()


def load_lan_settings(*, env: Mapping[str, str] | None = None, site_path: Path | None = None,
                      policy: Callable[[], tuple[dict[str, Any], str]] | None = None
                      ) -> LanSettings:
    env = os.environ if env is None else env
    layers = Layers(TABLE)
    layers.file(site_path if site_path is not None else paths.site_config_dir() / SITE_FILE,
                "site")
    layers.env(env)
    layers.policy(policy or read_platform_policy)
    sources = layers.finish(k.field for k in TABLE.keys)
    return validate(LanSettings(sources=sources, **layers.values))
