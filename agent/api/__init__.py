"""The local HTTP + WebSocket API (``thaicard-agent serve``); assembled by ``agent.assembly``."""
