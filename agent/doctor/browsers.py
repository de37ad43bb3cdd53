"""Whether each installed browser's admin policy lets the allowed pages reach the agent.

Chrome/Edge/Chromium (142+) block a public page's request to 127.0.0.1 unless the user
allows it or ``LocalNetworkAccessAllowedForUrls`` / ``LoopbackNetworkAllowedForUrls``
name the page; a plain ``http://`` intranet page is never even asked about (docs/admin.md).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..config import LOCAL_APP_ORIGINS
from .checks import Context, _f
from .report import Finding

CHROMIUM_REMEDY = (
    "Reinstall the package with the origins (MSI ORIGINn, deb ALLOWED_ORIGINS) or add them "
    "to the browser policy by GPO/MDM (docs/admin.md).",
    "ติดตั้งใหม่พร้อมระบุเว็บ (MSI ORIGINn, deb ALLOWED_ORIGINS) หรือเพิ่มในนโยบายเบราว์เซอร์"
    "ผ่าน GPO/MDM")
FIREFOX_REMEDY = (
    "Firefox lists host names, not origins: reinstall with them (MSI FIREFOX_DOMAINn, deb "
    "ALLOWED_ORIGINS) or add them to LocalNetworkAccess -> SkipDomains by GPO/MDM or in "
    "policies.json (docs/admin.md, \"Firefox\").",
    "Firefox ระบุเป็นชื่อโฮสต์ ไม่ใช่ origin: ติดตั้งใหม่พร้อมระบุ (MSI FIREFOX_DOMAINn, deb "
    "ALLOWED_ORIGINS) หรือเพิ่มใน LocalNetworkAccess -> SkipDomains ผ่าน GPO/MDM หรือ policies.json")

# The agent's own pages need no browser policy.
OWN_HOSTS = ("http://127.0.0.1", "http://localhost", "http://[::1]")


def needed_origins(ctx: Context) -> list[str]:
    return [o for o in ctx.config.allowed_origins
            if o not in LOCAL_APP_ORIGINS and not o.startswith(OWN_HOSTS)]


def _covered(browser: str, origin: str, listed: frozenset[str]) -> bool:
    """Chromium lists origins; Firefox's ``SkipDomains`` lists host patterns and matches the
    page's host the way Firefox does (docs/reference.md): ``*`` any host, ``*.example.org``
    that domain and every host under it, anything else that host only."""
    if browser != "Firefox":
        return origin in listed
    host = urlsplit(origin).hostname or ""
    for pattern in listed:
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and (host == pattern[2:] or host.endswith(pattern[1:])):
            return True
    return False


def check_browsers(ctx: Context) -> list[Finding]:
    needed = needed_origins(ctx)
    out = []
    for policy in ctx.room.browser_policies():
        if policy.installed is False and not policy.origins:
            continue                    # not installed and nothing configured: nothing to say
        title = (f"{policy.browser}: local network access policy",
                 f"{policy.browser}: นโยบายการเข้าถึงเครือข่ายภายใน")
        missing = [o for o in needed if not _covered(policy.browser, o, policy.origins)]
        where = ", ".join(policy.where)
        check = f"browser:{policy.browser.lower()}"
        if not missing:
            out.append(_f(check, "ok", title,
                          (f"The policy names every allowed origin ({where}).",
                           f"นโยบายระบุทุกเว็บที่อนุญาตแล้ว ({where})"),
                          browser=policy.browser, where=list(policy.where)))
            continue
        plain_http = [o for o in missing if o.startswith("http://")]
        chromium = policy.browser != "Firefox"
        verdict = "fail" if chromium and plain_http else "warn"
        explain_en = (f"Not in the policy ({where}): {', '.join(missing)}. ")
        explain_th = f"ยังไม่มีในนโยบาย ({where}): {', '.join(missing)} "
        if chromium and plain_http:
            explain_en += "The browser blocks plain-http pages' calls to the agent silently."
            explain_th += "เบราว์เซอร์จะบล็อกหน้าเว็บ http ธรรมดาโดยไม่ถาม"
        else:
            explain_en += "Users are asked to allow local network access on each page."
            explain_th += "ผู้ใช้จะถูกถามให้อนุญาตการเข้าถึงเครือข่ายภายในทุกหน้า"
        remedy = FIREFOX_REMEDY if not chromium else CHROMIUM_REMEDY
        out.append(_f(check, verdict, title, (explain_en, explain_th), remedy,
                      browser=policy.browser, missing=missing, where=list(policy.where)))
    return out
