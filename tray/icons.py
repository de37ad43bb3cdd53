"""Tray icons drawn with Pillow.

Every state has its own silhouette, so it reads without colour (colour-blind staff,
monochrome tray themes): an outlined reader slot when idle, a solid card when one is in,
a solid card with a ring badge while reading, a triangle badge on error, a dashed slot
when no reader is attached, a struck-through slot when PC/SC is down, dots while the
agent starts, and a struck-through circle when it cannot be reached. Claims add a corner
badge: a round one while claims wait to be sent, a square one when a claim failed.
"""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw

from .state import Claims, Status

SIZE = 64
_SCALE = 4                      # drawn large, then scaled down for smooth edges
_S = SIZE * _SCALE

GREY = (120, 120, 120, 255)
DARK = (40, 40, 40, 255)
BLUE = (25, 100, 200, 255)
GREEN = (20, 140, 60, 255)
ORANGE = (230, 130, 0, 255)
RED = (205, 30, 30, 255)
WHITE = (255, 255, 255, 255)
CLEAR = (0, 0, 0, 0)

# The card body, in the big canvas: a landscape rounded rectangle.
_CARD = (int(_S * 0.06), int(_S * 0.22), int(_S * 0.94), int(_S * 0.80))
_RADIUS = int(_S * 0.08)
_LINE = int(_S * 0.07)


def _chip(d: ImageDraw.ImageDraw, colour: tuple[int, int, int, int]) -> None:
    x0, y0 = int(_S * 0.16), int(_S * 0.38)
    d.rounded_rectangle((x0, y0, x0 + int(_S * 0.20), y0 + int(_S * 0.16)),
                        radius=int(_S * 0.03), fill=colour)


def _solid_card(d: ImageDraw.ImageDraw, colour: tuple[int, int, int, int]) -> None:
    d.rounded_rectangle(_CARD, radius=_RADIUS, fill=colour)
    _chip(d, WHITE)
    # two text lines on the card, cut out
    for i, width in enumerate((0.34, 0.26)):
        y = int(_S * (0.62 + i * 0.08))
        d.rectangle((int(_S * 0.16), y, int(_S * (0.16 + width)), y + int(_S * 0.035)),
                    fill=WHITE)


def _outline(d: ImageDraw.ImageDraw, colour: tuple[int, int, int, int]) -> None:
    d.rounded_rectangle(_CARD, radius=_RADIUS, outline=colour, width=_LINE)


def _dashed_outline(d: ImageDraw.ImageDraw, colour: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = _CARD
    dash = int(_S * 0.10)
    for start in range(x0, x1, dash * 2):
        end = min(start + dash, x1)
        d.rectangle((start, y0, end, y0 + _LINE), fill=colour)
        d.rectangle((start, y1 - _LINE, end, y1), fill=colour)
    for start in range(y0, y1, dash * 2):
        end = min(start + dash, y1)
        d.rectangle((x0, start, x0 + _LINE, end), fill=colour)
        d.rectangle((x1 - _LINE, start, x1, end), fill=colour)


def _dots(d: ImageDraw.ImageDraw, colour: tuple[int, int, int, int], count: int) -> None:
    r = int(_S * 0.07)
    cy = _S // 2
    xs = [int(_S * x) for x in ((0.5,) if count == 1 else (0.22, 0.5, 0.78))]
    for cx in xs:
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)


def _slash(d: ImageDraw.ImageDraw, colour: tuple[int, int, int, int]) -> None:
    d.line((int(_S * 0.10), int(_S * 0.92), int(_S * 0.90), int(_S * 0.08)),
           fill=WHITE, width=_LINE * 3)
    d.line((int(_S * 0.10), int(_S * 0.92), int(_S * 0.90), int(_S * 0.08)),
           fill=colour, width=_LINE)


def _no_entry(d: ImageDraw.ImageDraw, colour: tuple[int, int, int, int]) -> None:
    """Agent unreachable: a struck-through circle, unlike any card shape."""
    r = int(_S * 0.40)
    c = _S // 2
    d.ellipse((c - r, c - r, c + r, c + r), outline=colour, width=_LINE)
    k = int(r * 0.70)
    d.line((c - k, c + k, c + k, c - k), fill=colour, width=_LINE)


def _ring_badge(d: ImageDraw.ImageDraw, colour: tuple[int, int, int, int]) -> None:
    """Reading: a ring (a spinner, frozen) at the lower right."""
    cx, cy, r = int(_S * 0.76), int(_S * 0.74), int(_S * 0.20)
    d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=WHITE)
    inner = r - int(_S * 0.03)
    d.arc((cx - inner, cy - inner, cx + inner, cy + inner), start=-60, end=240,
          fill=colour, width=int(_S * 0.07))


def _triangle_badge(d: ImageDraw.ImageDraw, colour: tuple[int, int, int, int]) -> None:
    """Error: a warning triangle with "!" at the lower right."""
    x0, y0, x1, y1 = int(_S * 0.48), int(_S * 0.48), int(_S * 0.99), int(_S * 0.97)
    pad = int(_S * 0.03)
    d.polygon([((x0 + x1) // 2, y0 - pad), (x1 + pad, y1 + pad), (x0 - pad, y1 + pad)],
              fill=WHITE)
    d.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=colour)
    cx = (x0 + x1) // 2
    w = int(_S * 0.025)
    d.rectangle((cx - w, int(_S * 0.62), cx + w, int(_S * 0.83)), fill=WHITE)
    d.rectangle((cx - w, int(_S * 0.87), cx + w, int(_S * 0.92)), fill=WHITE)


def _claims_badge(d: ImageDraw.ImageDraw, claims: Claims) -> None:
    """Top right: a round badge while claims wait, a square one when one failed."""
    if claims is Claims.NONE:
        return
    x0, y0, x1, y1 = int(_S * 0.64), int(_S * 0.0), int(_S * 1.0), int(_S * 0.36)
    pad = int(_S * 0.03)
    if claims is Claims.PENDING:
        d.ellipse((x0 - pad, y0, x1, y1 + pad), fill=WHITE)
        d.ellipse((x0, y0 + pad, x1 - pad, y1), fill=BLUE)
        # clock hands
        cx, cy = (x0 + x1 - pad) // 2, (y0 + pad + y1) // 2
        w = int(_S * 0.02)
        d.rectangle((cx - w, cy - int(_S * 0.11), cx + w, cy), fill=WHITE)
        d.rectangle((cx - w, cy - w, cx + int(_S * 0.08), cy + w), fill=WHITE)
    else:
        d.rectangle((x0 - pad, y0, x1, y1 + pad), fill=WHITE)
        d.rectangle((x0, y0 + pad, x1 - pad, y1), fill=RED)
        cx = (x0 + x1 - pad) // 2
        w = int(_S * 0.025)
        d.rectangle((cx - w, int(_S * 0.07), cx + w, int(_S * 0.22)), fill=WHITE)
        d.rectangle((cx - w, int(_S * 0.26), cx + w, int(_S * 0.31)), fill=WHITE)


@lru_cache(maxsize=64)
def render(status: Status, claims: Claims = Claims.NONE, size: int = SIZE) -> Image.Image:
    """The icon for a state, as an RGBA image of ``size`` pixels (cached; do not modify)."""
    img = Image.new("RGBA", (_S, _S), CLEAR)
    d = ImageDraw.Draw(img)
    if status is Status.STARTING:
        _dots(d, GREY, 3)
    elif status is Status.OFFLINE:
        _no_entry(d, DARK)
    elif status is Status.PCSC_UNAVAILABLE:
        _outline(d, DARK)
        _slash(d, RED)
    elif status is Status.NO_READER:
        _dashed_outline(d, GREY)
    elif status is Status.IDLE:
        _outline(d, BLUE)
        _chip(d, BLUE)
    elif status is Status.CARD_PRESENT:
        _solid_card(d, GREEN)
    elif status is Status.READING:
        _solid_card(d, BLUE)
        _ring_badge(d, BLUE)
    elif status is Status.ERROR:
        _solid_card(d, DARK)
        _triangle_badge(d, RED)
    _claims_badge(d, claims)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def legend(path: str, lang: str = "en") -> None:
    """A picture of every icon with its meaning (docs/images/tray.png)."""
    from PIL import ImageFont

    from .i18n import text

    rows = [(s, Claims.NONE, text("state." + s.value, lang)) for s in Status]
    rows += [(Status.IDLE, Claims.PENDING, text("claims.pending", lang, n="n")),
             (Status.IDLE, Claims.FAILED, text("claims.failed", lang, n="n"))]
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont
    for candidate in ("/usr/share/fonts/truetype/tlwg/Loma.ttf",
                      "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            font = ImageFont.truetype(candidate, 18)
            break
        except OSError:
            continue
    else:
        font = ImageFont.load_default()
    sheet = Image.new("RGBA", (460, 12 + 44 * len(rows)), (245, 245, 245, 255))
    d = ImageDraw.Draw(sheet)
    for i, (status, claims, label) in enumerate(rows):
        y = 8 + 44 * i
        sheet.alpha_composite(render(status, claims, 40), (10, y))
        sheet.alpha_composite(render(status, claims, 40).convert("LA").convert("RGBA"), (56, y))
        d.text((108, y + 10), label, fill=(20, 20, 20, 255), font=font)
    sheet.save(path)


if __name__ == "__main__":
    import sys

    legend(sys.argv[1] if len(sys.argv) > 1 else "tray.png",
           sys.argv[2] if len(sys.argv) > 2 else "en")
