#!/usr/bin/env python3
"""Times the peer reader ``pythaiidcard`` (PyPI) on a card already in a reader.

Runs in the peer's own virtualenv (``.venv-peer``, made by ``scripts/bench.sh``), never in
the agent's: it imports only pythaiidcard and pyscard. ``bench_card_read.py`` inserts the
virtual card, runs this script, and counts the APDUs on the card's side.

    .venv-peer/bin/python bench/peer_pythaiidcard.py --reader "Virtual PCD 00 00" --reads 30

Prints one JSON object: per-read times (ms) to the text fields and to the whole read, and
what the peer decoded (citizen id, name, photo size) so the caller can check the read was
right. Each read is the peer's documented use: a ``card_session()`` (reader lookup,
connect, select) around ``read_card(include_photo=...)``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reader", required=True, help="reader name (looked up by index)")
    parser.add_argument("--reads", type=int, default=10)
    parser.add_argument("--no-photo", action="store_true")
    parser.add_argument("--photo-out", help="write the last read's photo bytes here")
    args = parser.parse_args()

    import pythaiidcard
    from pythaiidcard import ThaiIDCardReader
    from smartcard.System import readers

    # The peer picks readers by index; find the index of the reader we were given.
    names = [str(r) for r in readers()]
    if args.reader not in names:
        print(json.dumps({"error": f"reader {args.reader!r} not in {names}"}))
        return 2
    index = names.index(args.reader)

    totals, texts = [], []
    card = None
    for _ in range(args.reads):
        reader = ThaiIDCardReader(reader_index=index, skip_system_check=True)
        text_at: list[float] = []
        read_photo = reader._read_photo

        def photo_starts(*a: object, _real=read_photo, _mark=text_at, **k: object) -> bytes:
            _mark.append(time.perf_counter())     # every text field has been read by now
            return _real(*a, **k)

        reader._read_photo = photo_starts          # instrumentation only: timing, no change
        started = time.perf_counter()
        with reader.card_session():
            card = reader.read_card(include_photo=not args.no_photo)
        ended = time.perf_counter()
        totals.append((ended - started) * 1000)
        texts.append(((text_at[0] if text_at else ended) - started) * 1000)

    assert card is not None
    if args.photo_out:
        with open(args.photo_out, "wb") as out:
            out.write(card.photo or b"")
    print(json.dumps({
        "version": pythaiidcard.__version__,
        "python": sys.version.split()[0],
        "total_ms": totals, "text_ms": texts,
        "decoded": {"cid": card.cid, "name_th": card.thai_name.full_name,
                    "name_en": card.english_name.full_name,
                    "photo_bytes": len(card.photo) if card.photo else 0},
    }, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
