"""Numbers for people: byte counts in binary units, other counts as they are."""

from tui.units import format_progress, format_rate


def test_bytes_read_as_mib_with_what_they_are() -> None:
    assert format_progress(46_239_016, 88_554_375, "bytes of WAL") == "44.1 MiB of 84.5 MiB of WAL"
    assert format_rate(40_600_819.1, "bytes of WAL") == "38.7 MiB/s"
    assert format_progress(512, None, "bytes") == "512 B"


def test_other_units_keep_their_counts() -> None:
    assert format_progress(3, 12, "tables") == "3 of 12 tables"
    assert format_rate(2.5, "tables") == "2.5 tables/s"
    assert format_progress(40, 100, "%") == "40 of 100 %"
