"""zstd as drdeck reads what it stored: whole in memory, or streamed into a file (a big
cluster's backup_manifest); damaged, cut short, followed by more, or inflating past its
bound, each refused saying which."""

from __future__ import annotations

import io

import pytest

from tui.compression import Undecompressable, compress, decompress, decompress_into

PLAIN = bytes(range(256)) * 20_000  # 5 MiB: many pieces in, many pieces out
FRAME = compress(PLAIN, 3)


def pieces(raw: bytes, size: int) -> list[bytes]:
    return [raw[i:i + size] for i in range(0, len(raw), size)]


@pytest.mark.parametrize("size", [1, 777, 1 << 20])
def test_a_frame_streams_into_a_file_whatever_the_pieces(size: int) -> None:
    out = io.BytesIO()
    assert decompress_into(pieces(FRAME, size), out.write, len(PLAIN), "m") == len(PLAIN)
    assert out.getvalue() == PLAIN
    assert decompress(FRAME, len(PLAIN), "m") == PLAIN


@pytest.mark.parametrize(("raw", "said"), [
    (FRAME + b"more", "m has 4 bytes after its zstd frame"),
    (FRAME[:-5], "m is cut short"),
    (FRAME[:40] + bytes(64) + FRAME[104:], "m is damaged"),
])
def test_a_bad_frame_is_refused_streamed_or_whole(raw: bytes, said: str) -> None:
    for read in (lambda: decompress(raw, len(PLAIN), "m"),
                 lambda: decompress_into(pieces(raw, 4096), io.BytesIO().write,
                                         len(PLAIN), "m")):
        with pytest.raises(Undecompressable, match=said):
            read()


def test_more_than_the_bound_is_refused_before_it_is_all_written() -> None:
    out = io.BytesIO()
    with pytest.raises(Undecompressable, match="decompresses to more than 1,048,576 bytes"):
        decompress_into(pieces(FRAME, 4096), out.write, 1 << 20, "m")
    assert len(out.getvalue()) <= 1 << 20
