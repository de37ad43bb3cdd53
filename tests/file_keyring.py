"""A keyring backend for agent processes started by tests: secrets in the JSON file named by
``THAICARD_TEST_KEYRING`` (``{"service/username": "secret"}``), read on every call.

Selected with ``PYTHON_KEYRING_BACKEND=tests.file_keyring.FileKeyring``; only for tests
that need a process in a network namespace, where no Secret Service session runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class FileKeyring(KeyringBackend):
    priority = 1  # keyring declares it a classproperty

    @property
    def path(self) -> Path:
        return Path(os.environ["THAICARD_TEST_KEYRING"])

    def _load(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}/{username}"] = password
        self.path.write_text(json.dumps(data))

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}/{username}", None) is None:
            raise PasswordDeleteError("no such password")
        self.path.write_text(json.dumps(data))
