"""zstd, as drdeck compresses what it stores before encrypting it.

Frames carry a checksum, so a damaged object fails to decompress instead of
decompressing into wrong bytes; decompression is bounded, so an object planted
to inflate to gigabytes is refused before it is held.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import zstandard

from tui.errors import DrdeckError

SUFFIX = ".zst"  # what a compressed object's key carries before any ".gpg"
_PIECE = 1 << 10  # compressed bytes per step: at most a few MiB of output each


class Undecompressable(DrdeckError):
    """A compressed object that is damaged, or larger than it may honestly be."""


def compress(data: bytes, level: int) -> bytes:
    return zstandard.ZstdCompressor(level=level, write_checksum=True).compress(data)


async def compressed(chunks: AsyncIterator[bytes], level: int) -> AsyncIterator[bytes]:
    """`chunks` as one zstd frame, streamed: what drdeck compresses itself on the way to
    an object (the server compresses its tars, not the backup_manifest it sends)."""
    frame = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()
    async for chunk in chunks:
        out = frame.compress(chunk)
        if out:
            yield out
    yield frame.flush()


def decompress(raw: bytes, limit: int, where: str) -> bytes:
    """The plain bytes of one zstd frame, at most `limit` of them. Raises Undecompressable,
    saying where, when it is damaged, cut short, followed by other bytes, or would be larger.

    Fed a small piece at a time: one piece can only inflate so far, so a planted object is
    refused near the limit instead of being held whole first."""
    frame = zstandard.ZstdDecompressor().decompressobj()
    out = bytearray()
    rest = b""
    try:
        for start in range(0, len(raw), _PIECE):
            out += frame.decompress(raw[start:start + _PIECE])
            if len(out) > limit:
                raise Undecompressable(f"{where} decompresses to more than {limit:,} bytes: "
                                       "it is not what drdeck stored there; not used")
            if frame.eof:
                rest = frame.unused_data + raw[start + _PIECE:]
                break
    except zstandard.ZstdError as exc:
        raise Undecompressable(f"{where} is damaged: {exc}; not used") from None
    if not frame.eof:
        raise Undecompressable(f"{where} is cut short: its zstd frame does not end; not used")
    if rest:
        raise Undecompressable(f"{where} has {len(rest):,} bytes after its zstd frame: it is "
                               "not what drdeck stored there; not used")
    return bytes(out)
