#!/usr/bin/env python3
"""Reads the card in one reader with the peer library pythaiidcard and prints what it got.

Runs in the peer's own virtualenv (``.venv-peer``, made by ``scripts/setup.sh test``): it
imports only pythaiidcard (and pyscard through it), never ``agent``. The known-answer test
compares its output with the agent's, field by field, where the peer reads fully.

    .venv-peer/bin/python tests/known/peer_read.py --reader "Virtual PCD 00 01" [--nhso-only]

``--nhso-only`` reads just the NHSO applet: the peer's card model refuses cards with a
partial birth date or a lifelong expiry, so on such a card only its NHSO reader can run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reader", required=True)
    parser.add_argument("--nhso-only", action="store_true", help="read only the NHSO applet")
    args = parser.parse_args()

    import pythaiidcard
    from pythaiidcard import ThaiIDCardReader
    from smartcard.System import readers

    names = [str(r) for r in readers()]
    if args.reader not in names:
        print(json.dumps({"error": f"reader {args.reader!r} not in {names}"}))
        return 2
    # The peer picks readers by index (its documented use), so translate the name.
    reader = ThaiIDCardReader(reader_index=names.index(args.reader), skip_system_check=True)
    with reader.card_session():
        if args.nhso_only:
            nhso = reader.read_nhso_data()
            print(json.dumps({
                "main_inscl": nhso.main_inscl, "sub_inscl": nhso.sub_inscl,
                "main_hospital": nhso.main_hospital_name, "sub_hospital": nhso.sub_hospital_name,
                "paid_type": nhso.paid_type, "issue_date": nhso.issue_date.isoformat(),
                "expire_date": nhso.expire_date.isoformat(),
                "update_date": nhso.update_date.isoformat(),
                "change_count": nhso.change_hospital_amount}, ensure_ascii=False))
            return 0
        card = reader.read_card(include_photo=True)

    def name(n: object) -> dict[str, str]:
        return {"prefix": n.prefix, "first": n.first_name,
                "middle": n.middle_name, "last": n.last_name}

    photo = card.photo or b""
    out = {
        "version": pythaiidcard.__version__,
        "cid": card.cid,
        "name_th": name(card.thai_name), "name_en": name(card.english_name),
        "date_of_birth": card.date_of_birth.isoformat(), "gender": card.gender,
        "card_issuer": card.card_issuer,
        "issue_date": card.issue_date.isoformat(), "expire_date": card.expire_date.isoformat(),
        "address": {"house_no": card.address_info.house_no, "moo": card.address_info.moo,
                    "soi": card.address_info.soi, "street": card.address_info.street,
                    "subdistrict": card.address_info.subdistrict,
                    "district": card.address_info.district,
                    "province": card.address_info.province},
        "photo": {"length": len(photo), "hex": photo.hex(),
                  "sha256": hashlib.sha256(photo).hexdigest()},
    }
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
