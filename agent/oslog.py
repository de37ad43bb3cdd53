"""Warnings and errors also go to the OS event log (journald/syslog, the Windows Event Log,
macOS unified logging), where hospital monitoring already collects them.

Which handler is the per-OS room's choice (``OsRoom.event_log_handler``); here it gets the
the same ``RedactingFilter`` as the log file, so no citizen id, photo or
token reaches the OS log either.
"""

from __future__ import annotations

import logging

from . import osroom

FORMAT = "%(levelname)s %(name)s: %(message)s"     # the OS log stamps the time itself


def os_event_log_handler(redacting: logging.Filter, room: osroom.OsRoom | None = None,
                         ) -> logging.Handler | None:
    """The OS log's handler at WARNING with ``redacting`` (logging_setup's filter, handed in
    so the two modules do not import each other); None where this OS offers none."""
    handler = (room or osroom.current()).event_log_handler()
    if handler is None:
        return None
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(redacting)
    return handler
