"""zstd, as drdeck compresses what it stores before encrypting it.

Frames carry a checksum, so a damaged object fails to decompress instead of
decompressing into wrong bytes; decompression is bounded, so an object planted
to inflate to gigabytes is refused before it is held.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable

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
    out = bytearray()
    decompress_into((raw[start:start + _PIECE] for start in range(0, len(raw), _PIECE)),
                    out.extend, limit, where)
    return bytes(out)


def decompress_into(pieces: Iterable[bytes], write: Callable[[bytes], object], limit: int,
                    where: str) -> int:
    """`decompress`, streamed: the frame read from `pieces`, its plain bytes handed to
    `write` as they come (to a file, for what is too big to hold); how many there were."""
    frame = zstandard.ZstdDecompressor().decompressobj()
    written = extra = 0
    rest = b""
    pieces = iter(pieces)
    try:
        for piece in pieces:
            for start in range(0, len(piece), _PIECE):
                out = frame.decompress(piece[start:start + _PIECE])
                written += len(out)
                if written > limit:
                    raise Undecompressable(f"{where} decompresses to more than {limit:,} "
                                           "bytes: it is not what drdeck stored there; "
                                           "not used")
                write(out)
                if frame.eof:
                    rest = frame.unused_data + piece[start + _PIECE:]
                    break
            if frame.eof:
                # counted, not held: what follows a frame may be as large as anyone made it
                extra = sum(len(more) for more in pieces)
                break
    except zstandard.ZstdError as exc:
        raise Undecompressable(f"{where} is damaged: {exc}; not used") from None
    if not frame.eof:
        raise Undecompressable(f"{where} is cut short: its zstd frame does not end; not used")
    if rest or extra:
        raise Undecompressable(f"{where} has {len(rest) + extra:,} bytes after its zstd "
                               "frame: it is not what drdeck stored there; not used")
    return written
