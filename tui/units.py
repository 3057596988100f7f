"""Sizes as people read them."""

from __future__ import annotations


def format_bytes(n: float | None) -> str:
    """1.2 GiB, 340.0 MiB, 512 B; '-' when unknown."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def format_progress(done: float, total: float | None, unit: str) -> str:
    """'44.1 MiB of 84.5 MiB of WAL', '3 of 12 tables': byte counts in binary units, since
    46,239,016 of 88,554,375 is not something a tired person can read."""
    if unit == "bytes" or unit.startswith("bytes "):
        rest = unit[len("bytes"):]
        shown = format_bytes(done) + (f" of {format_bytes(total)}" if total else "")
        return shown + rest
    shown = f"{done:,.0f}" + (f" of {total:,.0f}" if total else "")
    return f"{shown} {unit}".rstrip()


def format_rate(rate: float, unit: str) -> str:
    """'38.7 MiB/s' for bytes, else '12.5 tables/s'."""
    if unit == "bytes" or unit.startswith("bytes "):
        return f"{format_bytes(rate)}/s"
    return f"{rate:,.1f} {unit}/s"
