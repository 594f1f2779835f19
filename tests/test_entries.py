"""The storage codec: upstream's comma-joined string, made lossless by escaping only '%' and ','."""

from __future__ import annotations

import pytest

from dashboard.guestbook.entries import decode_entry, encode_entry, split_entries

NASTY = [
    "plain",
    "a, b, c",
    "100% sure, 50%2C off",
    '"quoted" & #hash + plus \\ backslash',
    "emoji 🎉 日本語 עברית",
    "%",
    "%%2C%",
    ",",
]


@pytest.mark.parametrize("entry", NASTY)
def test_encode_then_decode_is_the_identity(entry: str) -> None:
    stored = encode_entry(entry)
    assert "," not in stored
    assert decode_entry(stored) == entry


def test_plain_entries_are_stored_byte_for_byte_as_upstream() -> None:
    assert encode_entry("Hello from the workshop!") == "Hello from the workshop!"
    assert split_entries("first,second") == ["first", "second"]


def test_a_joined_value_splits_back_into_its_entries() -> None:
    stored = ",".join(encode_entry(e) for e in NASTY)
    assert split_entries(stored) == NASTY
    assert split_entries(stored.encode()) == NASTY


def test_upstream_quirks() -> None:
    assert split_entries(",first save") == ["first save"]  # upstream's first save stores a leading empty entry
    assert split_entries(None) == [] and split_entries("") == []
    assert decode_entry("a%2cb") == "a,b"  # percent-decoding is case-insensitive on the hex
    assert split_entries(b"\xff,ok") == ["\ufffd", "ok"]  # invalid UTF-8 is shown, not fatal
