"""``thaicard-agent doctor`` and ``thaicard-agent support-bundle``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor", help="check this PC: readers, agent, browsers, NHSO, folders",
        description="Check everything the card read and the NHSO claims depend on and say "
                    "what to do (Thai and English). No card data is printed. Exit code: 0 "
                    "all fine, 1 warnings, 2 failures (as monitoring plugins expect).")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-read", action="store_true",
                   help="do not test-read an inserted card")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser(
        "support-bundle", help="zip the doctor report, logs and settings for support",
        description="Write a zip with the doctor report, the last logs, the effective "
                    "settings and where each came from, versions, the OS and reader names. "
                    "Never card data, never the token.")
    p.add_argument("path", nargs="?", type=Path, default=None,
                   help="the zip to write (default: thaicard-agent-support-<time>.zip here)")
    p.set_defaults(func=cmd_bundle)


def cmd_doctor(args: argparse.Namespace) -> int:
    from .run import run_doctor

    report = run_doctor(test_read=not args.no_read)
    if args.json:
        json.dump(report.to_json(), sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        sys.stdout.write(report.to_text())
    return report.exit_code


def cmd_bundle(args: argparse.Namespace) -> int:
    from .bundle import default_bundle_path, write_bundle

    path = args.path or default_bundle_path(Path.cwd())
    write_bundle(path)
    print(f"{path}\nSupport bundle written (no card data, no token) / "
          "สร้างไฟล์สำหรับฝ่ายสนับสนุนแล้ว (ไม่มีข้อมูลบัตรและ Token)")
    return 0
