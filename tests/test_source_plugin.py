"""A backup engine shipped as a package of its own: installed (a dist-info on the path),
it is found under the `drdeck.sources` entry-point group, configured by its own table,
and read into the inventory and status like the built-in ones."""

from __future__ import annotations

import json
from pathlib import Path

from cli_support import drdeck

PLUGIN = '''
import json
from pathlib import Path

from tui.sources import Source, SourceError


class LedgerSource(Source):
    """Backups recorded in a JSON file: {"backups": [...], "window": {...}}."""

    kind = "ledger"
    title = "Ledger"
    settings = {"file": True}
    example = '{ file = "/var/backups/ledger.json" }'

    def __init__(self, file):
        self.file = Path(file)

    @classmethod
    def from_settings(cls, settings, config=None):
        return cls(settings["file"])

    def describe(self):
        return f"file {self.file.name}"

    def read(self, read_commit_times=True):
        try:
            said = json.loads(self.file.read_text())
        except OSError as exc:
            raise SourceError(f"{self.file} cannot be read: {exc.strerror}") from None
        return {"kind": self.kind, "backups": said["backups"], "window": said["window"],
                "gaps": [], "problems": []}

    def backup_line(self, backup):
        return f"backup {backup['id']}"
'''


def install_plugin(where: Path, name: str = "ledger",
                   spec: str = "drdeck_ledger:LedgerSource") -> Path:
    """What `pip install drdeck-ledger` leaves on the path: the module and its metadata."""
    where.mkdir(exist_ok=True)
    (where / "drdeck_ledger.py").write_text(PLUGIN)
    info = where / "drdeck_ledger-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: drdeck-ledger\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[drdeck.sources]\n{name} = {spec}\n")
    return where


def configure(tmp_path: Path, table: str) -> Path:
    config = tmp_path / "drdeck.toml"
    config.write_text(f'[clusters.prod]\ndsn = "host=/nonexistent dbname=app"\nrpo = "1h"\n'
                      f'{table}\n')
    return config


def test_an_installed_engine_is_configured_and_read_like_a_built_in_one(tmp_path: Path) -> None:
    plugin = install_plugin(tmp_path / "site")
    ledger = tmp_path / "ledger.json"
    window = {"start": "2026-12-01T03:00:00+00:00", "end": "2099-12-03T06:00:00+00:00"}
    ledger.write_text(json.dumps({"backups": [{"id": "nightly-1"}], "window": window}))
    config = configure(tmp_path, f'ledger = {{ file = "{ledger}" }}')

    proc = drdeck("--config", str(config), "inventory", "--json", state_dir=tmp_path / "s",
                  PYTHONPATH=str(plugin))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [cluster] = json.loads(proc.stdout)["clusters"]
    assert cluster["ledger"]["window"] == window
    assert cluster["ledger"]["backups"] == [{"id": "nightly-1"}]
    assert cluster["error"] is None and cluster["pgbackrest"] is None

    human = drdeck("--config", str(config), "inventory", state_dir=tmp_path / "s",
                   PYTHONPATH=str(plugin))
    assert human.returncode == 0, human.stderr
    assert "Ledger file ledger.json" in human.stdout
    assert "backup nightly-1" in human.stdout
    assert "no drdeck repository: backed up by Ledger" in human.stdout

    ledger.unlink()  # an engine that cannot be read is its own error; the others go on
    proc = drdeck("--config", str(config), "inventory", "--json", state_dir=tmp_path / "s",
                  PYTHONPATH=str(plugin))
    [cluster] = json.loads(proc.stdout)["clusters"]
    assert "ledger.json cannot be read: No such file or directory" in cluster["ledger"]["error"]


def test_an_installed_engine_checks_its_table_like_a_built_in_one(tmp_path: Path) -> None:
    plugin = install_plugin(tmp_path / "site")
    config = configure(tmp_path, 'ledger = { path = "/x" }')
    proc = drdeck("--config", str(config), "inventory", state_dir=tmp_path / "s",
                  PYTHONPATH=str(plugin))
    assert proc.returncode == 2
    assert "unknown key 'path' in ledger" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_plugin_cannot_take_a_built_in_engine_s_name(tmp_path: Path) -> None:
    plugin = install_plugin(tmp_path / "site", name="pgbackrest")
    config = configure(tmp_path, 'pgbackrest = { file = "/x" }')
    proc = drdeck("--config", str(config), "inventory", state_dir=tmp_path / "s",
                  PYTHONPATH=str(plugin))
    # still pgBackRest's table: `file` is no setting of it, and `stanza` is missing
    assert proc.returncode == 2
    assert "unknown key 'file' in pgbackrest" in proc.stderr


def test_a_plugin_that_cannot_be_loaded_is_named_not_a_traceback(tmp_path: Path) -> None:
    plugin = install_plugin(tmp_path / "site", spec="drdeck_ledger_gone:LedgerSource")
    config = configure(tmp_path, 'ledger = { file = "/x" }')
    proc = drdeck("--config", str(config), "inventory", state_dir=tmp_path / "s",
                  PYTHONPATH=str(plugin))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "the backup source 'drdeck_ledger_gone:LedgerSource' (entry point ledger) " \
           "cannot be loaded" in proc.stderr
    assert "Traceback" not in proc.stderr
