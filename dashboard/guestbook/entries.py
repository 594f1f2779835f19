"""How guestbook entries are stored: the upstream format (one Redis string, entries joined by commas), made lossless.

The upstream gb-frontend keeps every entry in the key `guestbook` as one string joined with ",". An entry
that contains a comma is therefore split in two. This codec keeps the format (a plain entry is stored
byte for byte as upstream stores it, so the PHP page and this one read each other's data) and escapes
only the two characters that would break it: "%" as "%25" and "," as "%2C". Decoding undoes exactly that.
The only thing lost is that an upstream writer's literal "%2C" reads back as ","; that is the design choice.
"""

from __future__ import annotations

import re

KEY = "guestbook"
ESCAPES = re.compile("%(2C|25)", re.IGNORECASE)  # the only two escapes, scanned left to right like the decoder


def encode_entry(entry: str) -> str:
    """One entry as it is stored between commas."""
    return entry.replace("%", "%25").replace(",", "%2C")


def decode_entry(stored: str) -> str:
    """The inverse of `encode_entry` (case-insensitive on the hex, like percent-decoding)."""
    return ESCAPES.sub(lambda m: "," if m.group(1).upper() == "2C" else "%", stored) if "%" in stored else stored


def split_entries(raw: str | bytes | None) -> list[str]:
    """The entries of a stored value. Empty pieces are dropped (upstream's first save stores a leading empty entry)."""
    if raw is None:
        return []
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return [decode_entry(piece) for piece in text.split(",") if piece != ""]
