"""Attachment payloads: literal bytes, or large deterministic bytes generated on demand.

A 100 MB attachment must not cost 100 MB of resident memory per copy, so large
payloads are described by (size, seed) and produced chunk by chunk whenever they
are read.  The same (size, seed, header) always yields the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from typing import Iterator, Protocol

CHUNK_SIZE = 1 << 20  # 1 MiB: the unit used when streaming $value responses
_BLOCK = 1 << 16  # 64 KiB pattern block


class Blob(Protocol):
    """Read-only binary content of known size."""

    size: int

    def iter_chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]: ...

    def read_all(self) -> bytes: ...


class BytesBlob:
    """Content held in memory (small seeded files, uploads, caller-provided bytes)."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.size = len(self.data)

    def iter_chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        for start in range(0, self.size, chunk_size):
            yield self.data[start:start + chunk_size]

    def read_all(self) -> bytes:
        return self.data


class PatternBlob:
    """Deterministic pseudo-random content of any size, generated lazily.

    The stream is ``header`` followed by 64 KiB blocks; block ``k`` is a fixed
    pseudo-random block rotated by a k-dependent offset so that consecutive
    blocks differ.  Only the 64 KiB base block is kept in memory.
    """

    def __init__(self, size: int, seed: str, header: bytes = b"") -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size
        self.header = header[:size]
        self._base = hashlib.shake_256(seed.encode("utf-8")).digest(_BLOCK)

    def _block(self, index: int) -> bytes:
        shift = (index * 7919) % _BLOCK
        return self._base[shift:] + self._base[:shift]

    def iter_chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        buffer = bytearray(self.header)
        remaining = self.size - len(self.header)
        index = 0
        while remaining > 0 or buffer:
            while len(buffer) < chunk_size and remaining > 0:
                block = self._block(index)[:remaining]
                buffer += block
                remaining -= len(block)
                index += 1
            yield bytes(buffer[:chunk_size])
            del buffer[:chunk_size]

    def read_all(self) -> bytes:
        return b"".join(self.iter_chunks())


def magic_header(name: str) -> bytes:
    """Leading bytes that make generated files look like their extension says."""
    lowered = name.lower()
    if lowered.endswith(".pdf"):
        return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
    if lowered.endswith((".docx", ".xlsx", ".pptx", ".zip")):
        return b"PK\x03\x04\x14\x00\x06\x00"
    if lowered.endswith(".png"):
        return b"\x89PNG\r\n\x1a\n"
    if lowered.endswith((".jpg", ".jpeg")):
        return b"\xff\xd8\xff\xe0"
    return b""


def generated_blob(name: str, size: int, seed: str | None = None) -> PatternBlob:
    """A deterministic blob for a file named ``name`` of ``size`` bytes."""
    return PatternBlob(size, seed or f"{name}:{size}", magic_header(name))


# --- small but genuine seed documents ---------------------------------------

def tiny_png(rgb: tuple[int, int, int] = (0, 120, 212), width: int = 8, height: int = 8) -> bytes:
    """A valid, solid-colour PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


def simple_pdf(lines: list[str]) -> bytes:
    """A minimal single-page PDF showing ``lines`` (ASCII only)."""
    text_ops = ["BT", "/F1 12 Tf", "72 720 Td", "14 TL"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        text_ops.append(f"({escaped}) Tj T*")
    text_ops.append("ET")
    stream = "\n".join(text_ops).encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def simple_docx(paragraphs: list[str]) -> bytes:
    """A minimal WordprocessingML document that word processors can open."""
    from xml.sax.saxutils import escape

    body = "".join(f"<w:p><w:r><w:t>{escape(p)}</w:t></w:r></w:p>" for p in paragraphs)
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/word/document.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
            'relationships/officeDocument" Target="word/document.xml"/></Relationships>'),
        "word/document.xml": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            f"<w:body>{body}</w:body></w:document>"),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            # fixed timestamp keeps the bytes deterministic
            archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), text)
    return out.getvalue()
