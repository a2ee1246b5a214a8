"""Graph-looking identifiers.

Exchange item ids are base64 of a binary entry id.  The sandbox issues them in
*standard* base64, so they regularly contain ``/``, ``+`` and ``=``: a client
that forgets to encode ids in URL paths breaks here, as it would on some real
tenants.  Lookups accept the id as issued, percent-decoded (done by the router),
or in the "URL-safe" spellings clients use (``/`` -> ``-`` and ``+`` -> ``_``,
or the RFC 4648 mapping ``+`` -> ``-`` and ``/`` -> ``_``).  Ids are case-sensitive.
"""
from __future__ import annotations

import base64
import random
import threading
import uuid
from typing import Mapping, TypeVar

T = TypeVar("T")

# Prefixes of the binary blobs; they give the ids the familiar "AAMkAG..." / "AAkALg..." look.
_REST_PREFIX = b"\x00\x03\x24\x00"
_IMMUTABLE_PREFIX = b"\x00\x09\x2e\x00"


class IdFactory:
    """Generates ids from a seeded RNG so a given seed reproduces the same ids."""

    def __init__(self, seed: int = 20240101) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def _bytes(self, count: int) -> bytes:
        with self._lock:
            return self._rng.randbytes(count)

    def guid(self) -> str:
        return str(uuid.UUID(bytes=self._bytes(16), version=4))

    def _entry_id(self, prefix: bytes, mailbox_guid: str, body_len: int) -> str:
        raw = (prefix + mailbox_guid.encode("ascii") + b"\x00\x46\x00\x00\x00\x00\x00"
               + self._bytes(body_len))
        return base64.b64encode(raw).decode("ascii")

    def message_id(self, mailbox_guid: str) -> str:
        # 107 + 44 = 151 bytes -> 204 chars, ends with '=' padding like real ids.
        return self._entry_id(_REST_PREFIX, mailbox_guid, 107)

    def immutable_message_id(self, mailbox_guid: str) -> str:
        return self._entry_id(_IMMUTABLE_PREFIX, mailbox_guid, 65)

    def folder_id(self, mailbox_guid: str) -> str:
        return self._entry_id(_REST_PREFIX, mailbox_guid, 56)

    def attachment_id(self, mailbox_guid: str) -> str:
        return self._entry_id(_REST_PREFIX, mailbox_guid, 125)

    def short_id(self, length: int = 8) -> str:
        """Short ids such as messageRule ids ("AQAAAJ5dZqA=")."""
        return base64.b64encode(b"\x01\x00\x00\x00" + self._bytes(length - 4)).decode("ascii")

    def hex(self, length: int = 16) -> str:
        return self._bytes(length).hex()

    def opaque(self, length: int = 16) -> str:
        """Values such as changeKey or conversationId."""
        return base64.b64encode(self._bytes(length)).decode("ascii")


_SLASH_DASH = str.maketrans({"-": "/", "_": "+"})
_RFC4648 = str.maketrans({"-": "+", "_": "/"})


def id_candidates(raw: str) -> list[str]:
    """The spellings an incoming id may stand for, most literal first."""
    candidates = [raw]
    if "-" in raw or "_" in raw:
        for table in (_SLASH_DASH, _RFC4648):
            translated = raw.translate(table)
            if translated not in candidates:
                candidates.append(translated)
    return candidates


def lookup(index: Mapping[str, T], raw: str) -> T | None:
    """Find ``raw`` in ``index`` under any accepted spelling."""
    for candidate in id_candidates(raw):
        found = index.get(candidate)
        if found is not None:
            return found
    return None
