"""The README's promises: its commands exist, its screenshot is the real run screen."""

from __future__ import annotations

import re
from pathlib import Path

from cli_support import REPO, drdeck

README = (REPO / "README.md").read_text()


def test_the_screenshot_is_the_run_screen_snapshot() -> None:
    shown = (REPO / "docs" / "run-screen.svg").read_text()
    snapshot = (REPO / "tests" / "__snapshots__" / "test_app_snapshots" /
                "test_run_in_progress.svg").read_text()
    assert shown == snapshot, "refresh docs/run-screen.svg from the snapshot test"


def readme_commands() -> set[str]:
    """The subcommand of every drdeck command line in the README's code blocks."""
    found = set()
    for block in re.findall(r"```[a-z]*\n(.*?)```", README, re.DOTALL):
        for words in (line.split("#", 1)[0].split() for line in block.splitlines()):
            for index, word in enumerate(words):
                if word.rsplit("/", 1)[-1].strip("'") != "drdeck":
                    continue
                rest = words[index + 1:]
                while rest and rest[0].startswith("--"):
                    rest = rest[2:] if rest[0] == "--config" else rest[1:]
                if rest and re.fullmatch(r"[a-z]+", rest[0]):
                    found.add(rest[0])
    return found


def test_every_command_the_readme_shows_exists(tmp_path: Path) -> None:
    commands = readme_commands()
    assert {"run", "demo", "inventory", "status", "drills", "report", "docs", "init", "wal",
            "resume", "validate", "runbooks"} <= commands
    for command in sorted(commands):
        proc = drdeck(command, "--help", state_dir=tmp_path)
        assert proc.returncode == 0, f"drdeck {command} --help: {proc.stderr}"


def test_every_shipped_runbook_the_readme_names_exists() -> None:
    named = re.search(r"\*\*Shipped runbooks\*\*:(.*?)\(", README, re.DOTALL).group(1)
    names = re.findall(r"`([a-z-]+)`", named)
    shipped = {p.stem for p in (REPO / "runbooks").glob("*.toml")}
    assert set(names) == shipped


def test_every_action_the_readme_names_exists() -> None:
    from tui.engine.actions import ACTIONS

    block = re.search(r"\*\*Actions\*\*:(.*?)\n- \*\*Shipped", README, re.DOTALL).group(1)
    named = set(re.findall(r"`([a-z_.]+(?:\|[a-z]+)*)`", block))
    expanded = set()
    for item in named:
        head, *alternatives = item.split("|")
        expanded.add(head)
        prefix = head.rsplit(".", 1)[0]
        expanded |= {f"{prefix}.{alt}" for alt in alternatives}
    assert expanded == set(ACTIONS)


def test_the_performance_table_is_what_bench_prints_and_covers_every_benchmark() -> None:
    """The README's table is `python -m bench --markdown` pasted: same columns, and a row
    (with its reproduce command) for every benchmark `make bench` runs."""
    listing = (REPO / "bench" / "__main__.py").read_text()  # bench/ is not a package on sys.path
    benchmarks = re.findall(r'^    "([a-z-]+)": "bench\.', listing, re.MULTILINE)
    columns = re.search(r"^COLUMNS = \((.*?)\)$", listing, re.MULTILINE).group(1)
    assert len(benchmarks) >= 9

    section = README.split("## Performance", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows[0] == "| " + " | ".join(re.findall(r'"([a-z]+)"', columns)) + " |"
    commands = {re.search(r"`([^`]+)`", row.rsplit("|", 2)[1]).group(1) for row in rows[1:]}
    assert commands == {f".venv/bin/python -m bench --only {name}" for name in benchmarks}
