"""A C#-style typed model of the agent's answers, deserialised the way Json.NET does it:
every property declared with a type, ``DateTime`` fields parsed (a value that is not a date
throws), non-nullable ones refusing null, lists that are null throwing on ``.Count``.

Written in Python so CI needs no .NET; the rules are what a typed client enforces.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Any, get_type_hints


class DeserializeError(Exception):
    """Json.NET's JsonSerializationException / a NullReferenceException later."""


class DateTime(dt.datetime):
    """``DateTime``: must be there and parse."""


class NullableDateTime(dt.datetime):
    """``DateTime?``: null or a date that parses."""


def _datetime(name: str, value: Any, nullable: bool) -> dt.datetime | None:
    if value is None:
        if nullable:
            return None
        raise DeserializeError(f"{name}: null for a non-nullable DateTime")
    if not isinstance(value, str):
        raise DeserializeError(f"{name}: {value!r} is not a date")
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise DeserializeError(f"{name}: {value!r} is not a date") from None


def deserialize(cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise DeserializeError(f"{cls.__name__}: not an object")
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        kind, value = hints[f.name], data.get(f.name)
        if kind is DateTime or kind is NullableDateTime:
            values[f.name] = _datetime(f.name, value, kind is NullableDateTime)
        elif kind is str:
            if value is not None and not isinstance(value, str):
                raise DeserializeError(f"{f.name}: {value!r} is not a string")
            values[f.name] = value
        elif kind is int:
            if not isinstance(value, int):
                raise DeserializeError(f"{f.name}: {value!r} is not an int")
            values[f.name] = value
        elif kind is list:
            if value is None:
                raise DeserializeError(f"{f.name}: null list (NullReferenceException on .Count)")
            values[f.name] = [deserialize(ClaimType, v) for v in value]
        elif kind is Hospital:
            values[f.name] = None if value is None else deserialize(Hospital, value)
        else:
            raise AssertionError(kind)
    return cls(**values)


@dataclass
class Hospital:
    hcode: str
    hname: str


@dataclass
class ClaimType:
    claimType: str
    claimTypeName: str


@dataclass
class SmartCardRead:
    pid: str
    fname: str
    lname: str
    birthDate: str
    transDate: DateTime
    checkDate: DateTime
    mainInscl: str
    subInscl: str
    hospMain: Hospital
    hospSub: Hospital
    paidModel: str
    startDateTime: NullableDateTime
    expireDateTime: NullableDateTime
    claimTypes: list
    correlationId: str


@dataclass
class AuthenCode:
    claimType: str
    claimCode: str
    hcode: str
    claimDateTime: NullableDateTime
    checkDate: DateTime


@dataclass
class ConfirmSaved:
    pid: str
    claimType: str
    claimCode: str
    status: int
    createdDate: DateTime
