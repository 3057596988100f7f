"""Where a restore puts each tablespace: the checks made before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.pitr.restore import RestoreRefused
from tui.pitr.tablespaces import staging_home, tablespace_home, tablespace_places
from tui.sources.barman_cloud import Tablespace


def test_each_tablespace_goes_beside_the_data_directory_unless_mapped(tmp_path: Path) -> None:
    data = tmp_path / "restored"
    spaces = [Tablespace("fast", 16390, "/srv/fast"), Tablespace("slow", 16391, "/srv/slow")]
    places = tablespace_places(spaces, data, f"slow={tmp_path / 'elsewhere'}")
    assert places == {16390: tablespace_home(data) / "16390", 16391: tmp_path / "elsewhere"}


@pytest.mark.parametrize("mapping, why", [
    ("16391={tmp}/x", "'16391', which could be any of 16391 (oid 16390), other (oid 16391)"),
    ("other={staging}/t", "where a restore unpacks and then removes an incremental chain"),
    ("other={staging}", "where a restore unpacks and then removes an incremental chain"),
    ("other={tmp}/a, /srv/b={tmp}/b", "maps tablespace other twice"),
    ("16390={tmp}/a, other={tmp}/a", "each needs a directory of its own"),
])
def test_a_mapping_that_is_ambiguous_or_would_be_removed_is_refused(
        tmp_path: Path, mapping: str, why: str) -> None:
    data = tmp_path / "restored"
    # a tablespace may be named like another's oid: the key must not pick one silently
    spaces = [Tablespace("16391", 16390, "/srv/a"), Tablespace("other", 16391, "/srv/b")]
    with pytest.raises(RestoreRefused, match="tablespace") as refused:
        tablespace_places(spaces, data, mapping.format(tmp=tmp_path,
                                                       staging=staging_home(data)))
    assert why in str(refused.value)
