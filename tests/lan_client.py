"""A HIS server's side of the LAN tests: run inside the test's network namespace, it makes
the requests given as JSON on stdin from a chosen source address and prints the answers.

    ip netns exec <ns> python -m tests.lan_client < requests.json

Input: ``{"wait": "http://10.x.0.1:8189/", "wait_source", "wait_headers", "requests":
[{"source": "10.x.0.2", "url": ..., "method": "GET", "headers": {...}, "repeat": 1}]}``;
output: one JSON list of
``{"status", "body"}`` (``status`` 0 and ``error`` when the connection failed).
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit


def call(source: str, url: str, method: str = "GET",
         headers: dict[str, str] | None = None, body: Any = None) -> dict[str, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=10,
                                      source_address=(source, 0) if source else None)
    try:
        data = None if body is None else json.dumps(body).encode()
        sent = dict(headers or {})
        if data is not None:
            sent["Content-Type"] = "application/json"
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""),
                     body=data, headers=sent)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            answer: Any = json.loads(raw)
        except ValueError:
            answer = raw.decode(errors="replace")[:200]
        return {"status": resp.status, "body": answer}
    except OSError as exc:
        return {"status": 0, "error": type(exc).__name__}
    finally:
        conn.close()


def main() -> None:
    plan = json.load(sys.stdin)
    wait = plan.get("wait")
    if wait:
        deadline = time.monotonic() + 30
        while call(plan.get("wait_source", ""), wait,
                   headers=plan.get("wait_headers"))["status"] == 0:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
    out = []
    for req in plan["requests"]:
        for _ in range(int(req.get("repeat", 1))):
            out.append(call(req.get("source", ""), req["url"], req.get("method", "GET"),
                            req.get("headers"), req.get("body")))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
