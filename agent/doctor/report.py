"""The doctor's findings: one per check, each with a verdict, an explanation and an action.

Verdicts are ordered: ``ok`` < ``info`` < ``warn`` < ``fail``. The exit code follows the
worst one with the monitoring-plugin convention (0 fine, 1 warning, 2 failure) so Zabbix,
Nagios-style checks and scripts can run ``thaicard-agent doctor`` as they are.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import __version__

VERDICTS = ("ok", "info", "warn", "fail")
EXIT_CODES = {"ok": 0, "info": 0, "warn": 1, "fail": 2}
MARKS = {"ok": "[ OK ]", "info": "[INFO]", "warn": "[WARN]", "fail": "[FAIL]"}


@dataclass(frozen=True)
class Finding:
    """One check's result. ``detail`` holds facts for scripts: never card data or tokens."""

    check: str                     # stable id, e.g. "pcsc", "port"
    verdict: str                   # one of VERDICTS
    title_en: str
    title_th: str
    explain_en: str
    explain_th: str
    action_en: str = ""
    action_th: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "verdict": self.verdict,
                "title": {"en": self.title_en, "th": self.title_th},
                "explanation": {"en": self.explain_en, "th": self.explain_th},
                "action": {"en": self.action_en, "th": self.action_th} if self.action_en
                else None, "detail": self.detail}


def worst(verdicts: Iterable[str]) -> str:
    return max(verdicts, key=VERDICTS.index, default="ok")


@dataclass
class Report:
    findings: list[Finding]
    created: str = field(default_factory=lambda: dt.datetime.now().astimezone().isoformat(
        timespec="seconds"))

    @property
    def verdict(self) -> str:
        return worst(f.verdict for f in self.findings)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_json(self) -> dict[str, Any]:
        return {"agentVersion": __version__, "created": self.created, "verdict": self.verdict,
                "exitCode": self.exit_code, "checks": [f.to_json() for f in self.findings]}

    def to_text(self) -> str:
        lines = [f"Thai Card Agent {__version__} doctor, {self.created}", ""]
        for f in self.findings:
            lines.append(f"{MARKS[f.verdict]} {f.title_en} / {f.title_th}")
            lines.append(f"       {f.explain_en}")
            lines.append(f"       {f.explain_th}")
            if f.action_en:
                lines.append(f"       -> {f.action_en}")
                lines.append(f"       -> {f.action_th}")
        counts = {v: sum(f.verdict == v for f in self.findings) for v in VERDICTS}
        lines += ["", f"overall: {self.verdict} ({counts['ok']} ok, {counts['info']} info, "
                      f"{counts['warn']} warnings, {counts['fail']} failures)"]
        return "\n".join(lines) + "\n"
