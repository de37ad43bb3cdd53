"""The hospital's NHSO token, kept in the OS keyring of the user running the agent.

Never in a file, a log, the settings or an API answer. Storing is refused when the active
keyring backend would not protect it: the ``fail`` backend (no store at all), the ``null``
backend (discards), or any ``keyrings.alt`` backend (plain or base64 files). ``keyrings.alt``
is never a dependency of the agent; this check exists because once someone installs it, it
silently becomes the default store on headless Linux.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import keyring
import keyring.errors
from keyring.backend import KeyringBackend

from ..errors import AgentError, KeyringInsecure, KeyringUnavailable, NhsoTokenMissing
from .settings import SettingsError

log = logging.getLogger(__name__)

SERVICE = "thaicard-agent"
USERNAME = "nhso-token"
# Windows Credential Manager holds at most ~1280 characters per secret.
MAX_TOKEN_LENGTH = 1200
TOKEN_CACHE_SECONDS = 30.0      # a token set with the CLI reaches a running agent this fast
# After "Invalid token.": retry this soon at first (NHSO has refused good tokens during its
# own outages and accepted them again), then as long as the refusal has lasted, up to
# ``tokenRetry``.
TOKEN_FIRST_RETRY = 15.0

# What staff and admins are told while NHSO refuses the token (status page, tray, /v1/status).
REFUSED_ACTION_EN = ("Claims are kept and sent when NHSO accepts the token again. If this "
                     "lasts, ask IT to set a new NHSO token (tray: NHSO token…, or "
                     "`thaicard-agent token set`).")
REFUSED_ACTION_TH = ("รายการปิดสิทธิยังเก็บไว้และจะส่งเมื่อ สปสช. ยอมรับ Token อีกครั้ง หากยังเป็นอยู่ "
                     "ให้แจ้งฝ่ายไอทีตั้ง Token ใหม่ (เมนูถาด: Token สปสช.… หรือคำสั่ง "
                     "`thaicard-agent token set`)")


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
    def what(self) -> str:
        return "NHSO token" if self.username == USERNAME else self.username

    def sibling(self, username: str) -> TokenStore:
        """Another secret of the agent in the same keyring (the visit source's key)."""
        return TokenStore(self._backend, service=self.service, username=username)

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
        log.info("%s stored in %s", self.what, backend_name(backend))

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
        log.info("%s removed from %s", self.what, backend_name(backend))
        return True


class TokenState:
    """The running agent's view of the token: the keyring read at most every
    ``TOKEN_CACHE_SECONDS``, re-read at once after NHSO refused it, and watched so that a
    token set from another process (the CLI, the tray's dialog) wakes waiting claims."""

    def __init__(self, store: TokenStore, *,
                 on_new_token: Callable[[], Awaitable[None]] | None = None,
                 check_interval: float = TOKEN_CACHE_SECONDS,
                 publish: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.store = store
        self.check_interval = check_interval
        self._on_new_token = on_new_token
        self._publish = publish
        self._cached: tuple[float, str | None] | None = None
        self._seen: str | None = None
        self._watch: asyncio.Task[None] | None = None
        # What NHSO last said of the token: None (not used yet), True, or False since when.
        self._accepted: bool | None = None
        self._refused_since: float | None = None
        self._refused_message = ""

    def start(self) -> None:
        self._watch = asyncio.create_task(self._watch_loop(), name="nhso-token-watch")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None

    async def stored(self) -> str | None:
        """The token, or None; KeyringUnavailable when the store cannot answer."""
        now = time.monotonic()
        if self._cached is None or self._cached[0] < now:
            value = await asyncio.to_thread(self.store.get)
            self._cached = (now + TOKEN_CACHE_SECONDS, value)
            if value and value != self._seen and self._seen is not None:
                # A new token (``token set`` in another process): claims that waited for
                # one are tried now rather than after ``tokenRetry``.
                log.info("NHSO token changed; retrying queued claims")
                self._verdict(None)
                if self._on_new_token is not None:
                    await self._on_new_token()
            self._seen = value or ""
        return self._cached[1]

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            self._cached = None
            try:
                await self.stored()
            except AgentError as exc:
                log.debug("token check: %s", exc.code)

    async def require(self) -> str:
        value = await self.stored()
        if not value:
            raise NhsoTokenMissing()
        return value

    def forget(self) -> None:
        """Re-read the keyring at the next call (after NHSO refused the token)."""
        self._cached = None

    # -- what NHSO says of the token ------------------------------------------------------

    def nhso_answered(self, accepted: bool, message: str = "") -> None:
        """Every NHSO answer tells whether the token works (the client calls this)."""
        if not accepted:
            self._refused_message = message[:300]
            self.forget()               # a token set meanwhile is read at the next call
        self._verdict(accepted)

    def _verdict(self, accepted: bool | None) -> None:
        was = self._accepted
        self._accepted = accepted
        if accepted is False:
            if self._refused_since is None:
                self._refused_since = time.time()
        else:
            self._refused_since = None
        if was is not accepted and (accepted is False or was is False):
            if accepted is False:
                log.warning("NHSO refuses the token; claims are kept and retried")
            else:
                log.info("NHSO token: %s", "accepted again" if accepted else "replaced")
            if self._publish is not None:
                self._publish("nhso.token", self.health())

    def retry_delay(self, longest: float) -> float:
        """How long claims wait after "Invalid token.": ``TOKEN_FIRST_RETRY`` at first, then
        as long as the refusal has lasted (so it doubles), at most ``longest``."""
        if self._refused_since is None:
            return min(longest, TOKEN_FIRST_RETRY)
        lasted = time.time() - self._refused_since
        return min(longest, max(TOKEN_FIRST_RETRY, lasted))

    def health(self) -> dict[str, Any]:
        """The token's state for /v1/status, the status page and the tray: ``refused``
        (NHSO said "Invalid token."), ``accepted``, or ``unchecked`` (not used yet)."""
        if self._accepted is False:
            since = self._refused_since or time.time()
            return {"state": "refused",
                    "since": dt.datetime.fromtimestamp(since, dt.UTC).astimezone()
                    .isoformat(timespec="seconds"),
                    "message": self._refused_message,
                    "action_en": REFUSED_ACTION_EN, "action_th": REFUSED_ACTION_TH}
        return {"state": "accepted" if self._accepted else "unchecked", "since": None,
                "message": "", "action_en": "", "action_th": ""}

    async def configured(self) -> bool | None:
        """True/False, or None when the keyring cannot be asked."""
        try:
            return bool(await self.stored())
        except KeyringUnavailable:
            return None
