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
