"""Writes the application icon (PNG, ICO, ICNS) from the tray's own drawing.

One picture everywhere: the Start-menu shortcut, the .app bundle, the desktop entry and
the tray all show the same card-in-a-reader, so staff recognise it.
Usage: python installer/make_icons.py OUTPUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_icons(out: Path) -> dict[str, Path]:
    sys.path.insert(0, str(ROOT))
    from tray.icons import render
    from tray.state import Status

    out.mkdir(parents=True, exist_ok=True)
    big = render(Status.CARD_PRESENT, size=256).copy()
    files = {"png": out / "thaicard-agent.png", "ico": out / "thaicard-agent.ico",
             "icns": out / "thaicard-agent.icns"}
    big.save(files["png"])
    big.save(files["ico"], sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (256, 256)])
    render(Status.CARD_PRESENT, size=512).copy().save(files["icns"])
    return files


if __name__ == "__main__":
    for path in make_icons(Path(sys.argv[1])).values():
        print(path)
