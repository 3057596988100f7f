"""The parameter types a restore needs: port, new_directory, recovery_target.

coerce() answers what the text alone can say (the command line and the form ask it
alike); check_on_this_machine() what only the machine can (the form asks it too).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tui.runbook.loader import load_text
from tui.runbook.model import Param
from tui.runbook.params import check_on_this_machine, coerce

from cli_support import drdeck

PORT = Param("port", "port")
DIRECTORY = Param("data_dir", "new_directory")
TARGET = Param("target", "recovery_target")


@pytest.mark.parametrize(("raw", "value"), [("5433", 5433), (" 1 ", 1), ("65535", 65535),
                                            (5433, 5433)])
def test_a_port_in_range(raw, value) -> None:
    assert coerce(PORT, raw) == value


@pytest.mark.parametrize(("raw", "message"), [
    ("99999", "99999 is not a port: ports run from 1 to 65535"),
    ("0", "0 is not a port: ports run from 1 to 65535"),
    ("-5", "-5 is not a port"),
    ("54x2", "'54x2' is not a port number (1 to 65535)"),
    (True, "expected a port number"),
])
def test_a_port_out_of_range_or_not_a_number(raw, message) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        coerce(PORT, raw)


def test_a_port_someone_listens_on_is_in_use() -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        port = squatter.getsockname()[1]
        with pytest.raises(ValueError, match=f"^port {port} is in use"):
            check_on_this_machine(PORT, port)
    check_on_this_machine(PORT, port)  # free again once it closed


def test_a_new_directory_is_absolute(tmp_path: Path) -> None:
    assert coerce(DIRECTORY, f" {tmp_path}/new ") == f"{tmp_path}/new"
    assert coerce(DIRECTORY, "~/restored") == str(Path.home() / "restored")
    with pytest.raises(ValueError, match="'restored' is not an absolute path"):
        coerce(DIRECTORY, "restored")
    with pytest.raises(ValueError, match="must not be empty"):
        coerce(DIRECTORY, "  ")
    assert coerce(Param("d", "new_directory", default=""), "") == ""


def test_a_new_directory_must_be_absent_or_empty(tmp_path: Path) -> None:
    check_on_this_machine(DIRECTORY, str(tmp_path / "absent"))
    check_on_this_machine(DIRECTORY, str(tmp_path))
    for name in ("PG_VERSION", "base", "global"):
        (tmp_path / name).write_text("")
    with pytest.raises(ValueError, match=f"^{tmp_path} is not empty \\(it holds 3 entries\\)"):
        check_on_this_machine(DIRECTORY, str(tmp_path))
    with pytest.raises(ValueError, match="is not empty \\(it holds 1 entry\\)"):
        (tmp_path / "one").mkdir()
        (tmp_path / "one" / "x").write_text("")
        check_on_this_machine(DIRECTORY, str(tmp_path / "one"))
    with pytest.raises(ValueError, match="PG_VERSION is a file, not a directory"):
        check_on_this_machine(DIRECTORY, str(tmp_path / "PG_VERSION"))


@pytest.mark.parametrize("raw", [
    "2026-12-02 14:30:00+00", "2026-12-02T14:30:00.123456+01:00", "0/3000060", "3/9A000028",
    "748", "before_the_migration", "release-2026-12-02", "immediate", "latest",
])
def test_recovery_targets_of_every_kind(raw: str) -> None:
    assert coerce(TARGET, f" {raw} ") == raw


@pytest.mark.parametrize(("raw", "message"), [
    ("2026-12-02 14:61:00+00", "is not a timestamp; write it like 2026-11-27 14:29:59+00:00 "
     "(minute must be in 0..59)"),
    ("2026-13-02 14:00:00+00", "(month must be in 1..12)"),
    ("2026-12-02 14:30:00", "has no time zone; add one"),
    ("2026/12/02 14:30+00", "is not a timestamp"),
    ("14:61", "is not a timestamp"),
    ("", "must not be empty; write latest for the end of the archive"),
])
def test_a_target_that_looks_like_a_time_must_be_one(raw: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        coerce(TARGET, raw)
    assert message in str(refused.value)


def test_the_loader_takes_the_new_types_and_checks_their_defaults() -> None:
    head = '[runbook]\nname = "t"\ntitle = "T"\n'
    steps = '\n[[steps]]\nid = "a"\ntitle = "A"\naction = "manual"\nwith = { instructions = "x" }\n'
    good = load_text(head + '\n[params.port]\ntype = "port"\ndefault = 5433\n'
                     '\n[params.target]\ntype = "recovery_target"\ndefault = "latest"\n'
                     + steps, "rb.toml")
    assert good.params["port"].default == 5433
    from tui.errors import RunbookInvalid

    with pytest.raises(RunbookInvalid, match="default of port: 70000 is not a port"):
        load_text(head + '\n[params.port]\ntype = "port"\ndefault = 70000\n' + steps, "rb.toml")


def test_the_command_line_refuses_a_bad_port_before_the_run(tmp_path: Path) -> None:
    proc = drdeck("run", "pitr-restore", "--headless", "-p", "target=2026-12-02 14:61:00+00",
                  "-p", "data_dir=restored", "-p", "port=99999", state_dir=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "parameter port: 99999 is not a port: ports run from 1 to 65535" in proc.stderr
    assert "parameter target: '2026-12-02 14:61:00+00' is not a timestamp" in proc.stderr
    assert "parameter data_dir: 'restored' is not an absolute path" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "journal.sqlite").exists()  # no run was recorded


def test_warn_when_on_goes_with_a_switch_only() -> None:
    from tui.errors import RunbookInvalid

    head = '[runbook]\nname = "t"\ntitle = "T"\n'
    steps = '\n[[steps]]\nid = "a"\ntitle = "A"\naction = "manual"\nwith = { instructions = "x" }\n'
    good = load_text(head + '\n[params.replace]\ntype = "bool"\ndefault = false\n'
                     'warn_when_on = "On: drops the database"\n' + steps, "rb.toml")
    assert good.params["replace"].warn_when_on == "On: drops the database"
    with pytest.raises(RunbookInvalid, match='warn_when_on only goes with type = "bool"'):
        load_text(head + '\n[params.db]\ntype = "string"\nwarn_when_on = "x"\n' + steps,
                  "rb.toml")
    with pytest.raises(RunbookInvalid, match="warn_when_on must be text"):
        load_text(head + '\n[params.on]\ntype = "bool"\ndefault = true\nwarn_when_on = 1\n'
                  + steps, "rb.toml")
