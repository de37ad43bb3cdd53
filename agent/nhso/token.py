"""The hospital's NHSO token, kept in the OS keyring of the user running the agent.

Never in a file, a log, the settings or an API answer. Storing is refused when the active
keyring backend would not protect it: the ``fail`` backend (no store at all), the ``null``
backend (discards), or any ``keyrings.alt`` backend (plain or base64 files). ``keyrings.alt``
is never a dependency of the agent; this check exists because once someone installs it, it
silently becomes the default store on headless Linux.
"""

from __future__ import annotations

import logging

import keyring
import keyring.errors
from keyring.backend import KeyringBackend

from ..errors import KeyringInsecure, KeyringUnavailable, NhsoTokenMissing
from .settings import SettingsError

log = logging.getLogger(__name__)

SERVICE = "thaicard-agent"
USERNAME = "nhso-token"
# Windows Credential Manager holds at most ~1280 characters per secret.
MAX_TOKEN_LENGTH = 1200


def backend_name(backend: KeyringBackend) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _leaf_backends(backend: KeyringBackend) -> list[KeyringBackend]:
    """The stores behind a backend (the chainer reads and writes through several)."""
    inner = getattr(backend, "backends", None)
    if isinstance(inner, (list, tuple)):
        return [leaf for b in inner for leaf in _leaf_backends(b)]
    return [backend]


def backend_problem(backend: KeyringBackend) -> KeyringUnavailable | KeyringInsecure | None:
    """Why this backend must not hold the token, or None when it may."""
    leaves = _leaf_backends(backend)
    if not leaves:
        return KeyringUnavailable("no keyring backend is available")
    for leaf in leaves:
        module = type(leaf).__module__
        name = backend_name(leaf)
        if module.startswith("keyring.backends.fail"):
            return KeyringUnavailable(
                "no keyring backend is available (on Linux: a Secret Service such as "
                "gnome-keyring or KWallet must be running and unlocked)")
        if module.startswith("keyring.backends.null"):
            return KeyringInsecure(f"{name} discards secrets")
        if module.startswith("keyrings.alt") or module.split(".")[0] == "keyrings_alt":
            return KeyringInsecure(f"{name} keeps secrets in a plain or base64 file; "
                                   "uninstall keyrings.alt or choose another backend")
    return None


def validate_token(token: str) -> str:
    token = token.strip()
    if not token:
        raise SettingsError("the token is empty")
    if len(token) > MAX_TOKEN_LENGTH:
        raise SettingsError(f"the token is longer than {MAX_TOKEN_LENGTH} characters")
    if any(not ("!" <= ch <= "~") for ch in token):
        raise SettingsError("the token must be printable ASCII with no spaces")
    return token


def mask(token: str) -> str:
    """Enough to tell two tokens apart on screen, not enough to use one."""
    if len(token) < 12:
        return "*" * 8
    return f"{'*' * 8}{token[-4:]} ({len(token)} characters)"


class TokenStore:
    """Blocking keyring access; the service calls it through ``asyncio.to_thread``."""

    def __init__(self, backend: KeyringBackend | None = None, *, service: str = SERVICE,
                 username: str = USERNAME) -> None:
        self._backend = backend
        self.service = service
        self.username = username

    @property
    def backend(self) -> KeyringBackend:
        return self._backend if self._backend is not None else keyring.get_keyring()

    def check_backend(self) -> None:
        problem = backend_problem(self.backend)
        if problem is not None:
            raise problem

    def get(self) -> str | None:
        """The token, None when none is stored; KeyringUnavailable when the store cannot answer."""
        backend = self.backend
        problem = backend_problem(backend)
        if isinstance(problem, KeyringUnavailable):
            raise problem
        if problem is not None:
            # A token never goes into an insecure store, so any found there is not ours.
            return None
        try:
            return backend.get_password(self.service, self.username)
        except keyring.errors.KeyringError as exc:
            raise KeyringUnavailable(f"{backend_name(backend)}: {type(exc).__name__}") from None

    def require(self) -> str:
        token = self.get()
        if not token:
            raise NhsoTokenMissing()
        return token

    def set(self, token: str) -> None:
        token = validate_token(token)
        self.check_backend()
        backend = self.backend
        try:
            backend.set_password(self.service, self.username, token)
        except keyring.errors.KeyringError as exc:
            raise KeyringUnavailable(f"{backend_name(backend)}: {type(exc).__name__}") from None
        log.info("NHSO token stored in %s", backend_name(backend))

    def clear(self) -> bool:
        """Remove the token; False when there was none."""
        backend = self.backend
        problem = backend_problem(backend)
        if isinstance(problem, KeyringUnavailable):
            raise problem
        try:
            backend.delete_password(self.service, self.username)
        except keyring.errors.PasswordDeleteError:
            return False
        except keyring.errors.KeyringError as exc:
            raise KeyringUnavailable(f"{backend_name(backend)}: {type(exc).__name__}") from None
        log.info("NHSO token removed from %s", backend_name(backend))
        return True
