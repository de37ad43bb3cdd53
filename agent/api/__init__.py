"""The local HTTP + WebSocket API (``thaicard-agent serve``)."""

from .app import create_app

__all__ = ["create_app"]
