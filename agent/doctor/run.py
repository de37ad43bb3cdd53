"""Run every check in order and collect the report (the CLI, the tray and the bundle)."""

from __future__ import annotations

from collections.abc import Callable

from ..config import Config, load_config
from ..errors import AgentError
from .browsers import check_browsers
from .checks import (
    Context,
    _f,
    check_data_dir,
    check_keyring,
    check_logs,
    check_loopback,
    check_port,
    check_readers,
)
from .nhso_checks import check_nhso
from .report import Finding, Report

CONFIG_TITLE = ("Agent settings and admin policy", "การตั้งค่าและนโยบายของผู้ดูแลระบบ")


def config_finding(ctx: Context, config: Config | None, problem: AgentError | None) -> Finding:
    _values, where = ctx.room.read_policy() if problem is None else ({}, "?")
    if problem is not None or config is None:
        detail = problem.detail if problem else "?"
        return _f("config", "fail", CONFIG_TITLE,
                  (f"The settings are not valid: {detail}. The agent refuses to start.",
                   f"การตั้งค่าไม่ถูกต้อง: {detail} โปรแกรมจะไม่เริ่มทำงาน"),
                  ("Fix the value named (config.json, THAICARD_* or the admin policy; "
                   "docs/admin.md).", "แก้ค่าที่ระบุ (config.json, THAICARD_* หรือนโยบาย)"))
    locked = [k for k in config.public_view()["policyKeys"]]
    if locked:
        return _f("config", "ok", CONFIG_TITLE,
                  (f"Admin policy {where} fixes: {', '.join(locked)}.",
                   f"นโยบาย {where} กำหนด: {', '.join(locked)}"), policy=where,
                  policyKeys=locked, sources=dict(config.sources))
    return _f("config", "info", CONFIG_TITLE,
              (f"No admin policy ({where} is absent or empty): users may change every "
               "setting.", f"ไม่มีนโยบายผู้ดูแล ({where}) ผู้ใช้เปลี่ยนค่าได้ทุกค่า"),
              ("To fix the allowed web pages on every PC, deploy the policy (docs/admin.md).",
               "หากต้องการกำหนดเว็บที่อนุญาตทุกเครื่อง ให้ติดตั้งนโยบาย"), policy=where,
              policyKeys=[], sources=dict(config.sources))


def run_doctor(ctx: Context | None = None, *, test_read: bool = True,
               config_loader: Callable[[], Config] | None = None) -> Report:
    """Every check; ``ctx`` None: this machine with its own settings (a broken setting is
    itself a finding, and the other checks run with the defaults)."""
    problem: AgentError | None = None
    config: Config | None = None
    if ctx is None:
        try:
            config = (config_loader or load_config)()
        except AgentError as exc:
            problem = exc
        ctx = Context(config=config or Config(), test_read=test_read)
    else:
        config = ctx.config
    findings = [config_finding(ctx, config, problem)]
    findings += check_readers(ctx)
    findings.append(check_port(ctx))
    findings.append(check_loopback(ctx))
    findings += check_browsers(ctx)
    findings.append(check_keyring(ctx))
    findings += check_nhso(ctx)
    findings.append(check_data_dir(ctx))
    findings.append(check_logs(ctx))
    return Report(findings)
