"""Room for a restore, per disk, before anything is fetched: what a plain backup and an
incremental chain write, where it goes, and a disk too small for it refused with the
numbers. Real filesystems: the test's own and a small tmpfs."""

from __future__ import annotations

import pytest

from tui.pitr.basebackup import TablespaceBackup
from tui.pitr.restore import RestoreRefused
from tui.pitr.room import check_room, needed
from tui.units import format_bytes

from fault_support import small_filesystem
from pitr_support import MiB, backup


def _space(oid: int, size: int) -> TablespaceBackup:
    return TablespaceBackup(oid=oid, name="fast", location="/srv/fast", object="o",
                            plaintext_size=size, stored_size=1, sha256_stored="",
                            sha256_plaintext="")


def test_a_chain_needs_its_backups_unpacked_beside_the_data_directory_and_the_result(
        tmp_path) -> None:
    full = backup(3, size=40 * MiB, tablespaces=(_space(16400, 10 * MiB),))
    inc = backup(2, parent=full[1], size=3 * MiB, tablespaces=(_space(16400, MiB),))
    data_dir, fast = tmp_path / "restored", tmp_path / "fast"
    wants = needed([full[0], inc[0]], data_dir, {16400: fast}, 16 * MiB)
    assert wants == [
        (data_dir, 56 * MiB, "the data directory and the WAL fed ahead"),
        (fast, 10 * MiB, "tablespace fast"),  # the combined result: the full backup's size
        (tmp_path / "restored.chain", 54 * MiB,
         "the 2 backups of the chain, unpacked to be combined"),
    ]
    said = check_room(wants)  # one disk: 120 MiB in all
    assert said.startswith(f"{format_bytes(120 * MiB)} of ") and str(tmp_path) in said


def test_places_on_one_small_disk_add_up_and_the_refusal_gives_the_numbers(tmp_path) -> None:
    with small_filesystem("8m") as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
        # each fits alone; together they do not
        wants = [(disk / "restored", 5 * MiB, "the data directory and the WAL fed ahead"),
                 (disk / "fast" / "deeper", 4 * MiB, "tablespace fast"),
                 (tmp_path / "elsewhere", 1 * MiB, "tablespace slow")]
        with pytest.raises(RestoreRefused) as refused:
            check_room(wants)
        said = str(refused.value)
        assert said.startswith(f"the disk holding {disk} has "), said
        assert ("free, and the restore needs 9.0 MiB there: the data directory and the WAL "
                "fed ahead (5.0 MiB), tablespace fast (4.0 MiB). Nothing was written.") in said
        assert "slow" not in said, "the other disk has room"
        assert check_room(wants[:1] + wants[2:]).count(" free at ") == 2
