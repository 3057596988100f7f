"""`drdeck init`: a commented drdeck.toml that loads, and a schedule (cron, systemd, GitHub
Actions) that runs snapshot-backup and verify-backup headless and fails visibly."""

from __future__ import annotations

import shlex
import subprocess
from argparse import Namespace
from pathlib import Path

import pytest

from tui.commands.init import EXAMPLE, example_workflow, init_command
from tui.config import load_config_file

from cli_support import REPO, drdeck

FLAGS = ("--cluster", "prod", "--database", "app", "--repository-type", "local")


def init(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """drdeck init in `tmp_path`, stdin not a terminal (as in CI)."""
    return drdeck("init", *args, state_dir=tmp_path / "state", cwd=tmp_path)


def test_writes_a_config_that_loads(tmp_path: Path) -> None:
    result = init(tmp_path, *FLAGS, "--path", "backups", "--dsn",
                  "postgresql://backup@db.internal/app", "--recipient", "backup@example.com")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "drdeck.toml"
    assert f"wrote {path}" in result.stdout
    text = path.read_text()
    assert text.startswith("# drdeck.toml, written by `drdeck init`")
    assert "# [notify]" in text and "# [journal]" in text  # commented, ready to fill in
    config = load_config_file(path)
    cluster = config.cluster("prod")
    assert cluster.dsn == "postgresql://backup@db.internal/app" and cluster.dsn_env is None
    assert cluster.databases == ("app",) and cluster.gpg_recipients == ("backup@example.com",)
    assert (cluster.rpo, cluster.rto) == (36 * 3600, 4 * 3600)
    repository = config.repository_for(cluster)
    assert repository.type == "local" and repository.path == tmp_path / "backups"
    assert result.stderr == ""


def test_s3_and_the_database_from_the_dsn(tmp_path: Path) -> None:
    result = init(tmp_path, "--cluster", "main", "--dsn", "host=db.internal dbname=orders",
                  "--bucket", "backups", "--endpoint-url", "https://r2.example.com",
                  "--region", "auto", "--schedule", "hourly")
    assert result.returncode == 0, result.stderr
    config = load_config_file(tmp_path / "drdeck.toml")
    cluster = config.cluster("main")
    assert cluster.databases == ("orders",) and cluster.rpo == 2 * 3600
    repository = config.repository_for(cluster)
    assert (repository.type, repository.bucket, repository.endpoint_url, repository.region) == (
        "s3", "backups", "https://r2.example.com", "auto")
    assert "unencrypted" in result.stderr  # no recipient: said out loud


def test_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "drdeck.toml"
    path.write_text("# mine\n")
    result = init(tmp_path, *FLAGS, "--path", "backups")
    assert result.returncode == 2
    assert "not overwriting" in result.stderr and "--force" in result.stderr
    assert path.read_text() == "# mine\n"
    assert not (tmp_path / "drdeck-backup.cron").exists()  # nothing half-done

    (tmp_path / "drdeck.toml").unlink()
    (tmp_path / "drdeck-backup.cron").write_text("# my cron\n")
    assert init(tmp_path, *FLAGS, "--path", "backups").returncode == 2
    assert not path.exists()

    result = init(tmp_path, *FLAGS, "--path", "backups", "--force")
    assert result.returncode == 0, result.stderr
    assert load_config_file(path).cluster("prod").databases == ("app",)
    assert "run snapshot-backup" in (tmp_path / "drdeck-backup.cron").read_text()


def test_missing_answers_without_a_terminal(tmp_path: Path) -> None:
    result = init(tmp_path, "--cluster", "prod")
    assert result.returncode == 2
    assert "--database NAME" in result.stderr and "--path DIR" in result.stderr
    assert list(tmp_path.glob("drdeck*")) == []


def test_a_password_in_the_dsn_is_refused(tmp_path: Path) -> None:
    result = init(tmp_path, *FLAGS, "--path", "b", "--dsn",
                  "postgresql://backup:hunter2secret@db/app")
    assert result.returncode == 2
    assert "password" in result.stderr and "hunter2secret" not in result.stderr + result.stdout
    assert list(tmp_path.glob("drdeck*")) == []


@pytest.mark.parametrize("schedule", [[], ["--systemd"], ["--github"]],
                         ids=["cron", "systemd", "github"])
def test_the_files_get_their_modes_whatever_the_umask(tmp_path: Path, schedule) -> None:
    """Under umask 000 a drdeck.toml would be writable by everyone (and then refused)."""
    import os
    import stat
    import sys

    from cli_support import drdeck_env

    argv = [sys.executable, "-m", "tui", "init", *FLAGS, "--path", "backups", "--dsn-env",
            "DATABASE_URL", *schedule]
    result = subprocess.run(["sh", "-c", 'umask 000 && exec "$@"', "sh", *argv],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60,
                            env=drdeck_env(tmp_path / "state"), stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert f"wrote {tmp_path / 'drdeck.toml'} (mode 0600)" in result.stdout
    written = {p: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")
               if "state" not in p.parts}
    assert written.pop(tmp_path / "drdeck.toml") == 0o600
    assert written and all(mode == (0o755 if path.is_dir() else 0o644)
                           for path, mode in written.items()), written
    loaded = drdeck("--config", str(tmp_path / "drdeck.toml"), "status",
                    state_dir=tmp_path / "state", cwd=tmp_path)
    assert "refused" not in loaded.stderr, loaded.stderr
    assert os.stat(tmp_path / "drdeck.toml").st_uid == os.geteuid()


def test_cron_lines(tmp_path: Path) -> None:
    result = init(tmp_path, *FLAGS, "--database", "billing", "--path", "backups",
                  "--recipient", "backup@example.com", "--schedule", "hourly")
    assert result.returncode == 0, result.stderr
    config = tmp_path / "drdeck.toml"
    cron = (tmp_path / "drdeck-backup.cron").read_text()
    entries = [line for line in cron.splitlines() if line and not line.startswith("#")]
    assert len(entries) == 4  # snapshot-backup and verify-backup for each database
    for line in entries:
        assert line in result.stdout  # printed as well as written
        fields = line.split(" ", 5)
        command = fields[5]
        assert "%" not in command
        words = shlex.split(command.split(" >>")[0])
        assert words[words.index("--config") + 1] == str(config)
        assert words[words.index("run") + 1: words.index("run") + 3][1] == "--headless"
        assert "encrypt=false" not in words
        assert f" 2>&1 || echo \"drdeck: {words[words.index('run') + 1]} of prod/" in command
    backups = [e for e in entries if "run snapshot-backup --headless" in e]
    verifies = [e for e in entries if "run verify-backup --headless" in e]
    assert [e.split(" ", 5)[:5] for e in backups] == [["17", "*", "*", "*", "*"]] * 2
    assert [e.split(" ", 5)[:5] for e in verifies] == [["47", "3", "*", "*", "*"]] * 2
    assert {"-p database=app" in e for e in backups} == {True, False}
    assert all("-p cluster=prod" in e for e in entries)
    assert "crontab -" in result.stdout


def test_unencrypted_schedule_says_so(tmp_path: Path) -> None:
    assert init(tmp_path, *FLAGS, "--path", "backups").returncode == 0
    cron = (tmp_path / "drdeck-backup.cron").read_text()
    backup = next(line for line in cron.splitlines() if "snapshot-backup --headless" in line
                  and not line.startswith("#"))
    assert "-p encrypt=false" in backup
    assert "DATABASE_URL" in cron  # dsn_env: cron does not set it, and the file says so


def test_systemd_units(tmp_path: Path) -> None:
    result = init(tmp_path, *FLAGS, "--path", "backups", "--systemd")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "drdeck-backup.cron").exists()
    service = (tmp_path / "drdeck-backup.service").read_text()
    timer = (tmp_path / "drdeck-backup.timer").read_text()
    verify = (tmp_path / "drdeck-verify.service").read_text()
    verify_timer = (tmp_path / "drdeck-verify.timer").read_text()
    config = tmp_path / "drdeck.toml"
    assert "Type=oneshot" in service
    [exec_start] = [line for line in service.splitlines() if line.startswith("ExecStart=")]
    assert exec_start.endswith(f"--config {config} run snapshot-backup --headless "
                               "-p cluster=prod -p database=app -p encrypt=false")
    assert f"--config {config} run verify-backup --headless -p cluster=prod -p database=app" \
        in verify
    assert "OnCalendar=*-*-* 02:17:00" in timer and "Persistent=true" in timer
    assert "OnCalendar=*-*-* 03:47:00" in verify_timer
    assert "WantedBy=timers.target" in timer
    assert "systemctl enable --now drdeck-backup.timer" in result.stdout


def test_github_workflow(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()  # the repository the workflow and drdeck.toml live in
    (tmp_path / "ops").mkdir()
    result = init(tmp_path, "--config", "ops/drdeck.toml", "--cluster", "prod", "--dsn-env",
                  "DATABASE_URL", "--database", "app", "--bucket", "backups",
                  "--recipient", "backup@example.com", "--github")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "ops" / "drdeck-backup.cron").exists()  # the workflow schedules
    text = (tmp_path / ".github" / "workflows" / "database-backup.yml").read_text()
    check_workflow(text, config="ops/drdeck.toml", hourly=False)
    assert load_config_file(tmp_path / "ops" / "drdeck.toml").cluster("prod").dsn_env == \
        "DATABASE_URL"


def test_github_workflow_hourly(tmp_path: Path) -> None:
    result = init(tmp_path, *FLAGS, "--path", "backups", "--github", "--schedule", "hourly")
    assert result.returncode == 0, result.stderr
    assert "local repository on a GitHub runner" in result.stderr
    text = (tmp_path / ".github" / "workflows" / "database-backup.yml").read_text()
    check_workflow(text, config="drdeck.toml", hourly=True, encrypted=False)


def check_workflow(text: str, *, config: str, hourly: bool, encrypted: bool = True) -> None:
    for secret in ("DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert f"{secret}: ${{{{ secrets.{secret} }}}}" in text
    assert ("GPG_PRIVATE_KEY: ${{ secrets.GPG_PRIVATE_KEY }}" in text) is encrypted
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load(text)
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on` as true
    crons = [entry["cron"] for entry in triggers["schedule"]]
    assert crons == (["17 * * * *", "47 3 * * *"] if hourly else ["17 2 * * *"])
    assert "workflow_dispatch" in triggers
    assert workflow["env"]["DRDECK_CONFIG"] == config
    backup, verify = workflow["jobs"]["backup"], workflow["jobs"]["verify"]
    runs = [step.get("run", "") for step in backup["steps"]]
    assert "drdeck run snapshot-backup --headless -p cluster=prod -p database=app" + (
        "" if encrypted else " -p encrypt=false") in runs
    verify_runs = [step.get("run", "") for step in verify["steps"]]
    assert ("drdeck run verify-backup --headless -p cluster=prod -p database=app "
            "-p target_dsn=postgresql://postgres@localhost:5432/postgres") in verify_runs
    assert verify["services"]["scratch"]["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    imports = [r for r in runs if "gpg --batch --import" in r]
    assert len(imports) == (1 if encrypted else 0)
    # fails visibly: nothing swallows drdeck's exit code
    for step in backup["steps"] + verify["steps"]:
        assert "continue-on-error" not in step
        assert "|| true" not in step.get("run", "")
    if hourly:
        assert "github.event.schedule" in backup["if"] and "47 3" in verify["if"]
    else:
        assert verify["needs"] == "backup"


def test_the_shipped_example_is_what_init_writes() -> None:
    shipped = (REPO / "examples" / "database-backup.yml").read_text()
    assert shipped == example_workflow(), "regenerate: python -c 'from tui.commands.init " \
        "import example_workflow; print(example_workflow(), end=\"\")' > examples/..."
    check_workflow(shipped, config="drdeck.toml", hourly=False)
    assert EXAMPLE.bucket == "backups"


def test_interactive_questions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    answers = iter([
        "",  # cluster name: the default, prod
        "postgresql://backup:oops@db/app",  # refused: a password
        "postgresql://backup@db.internal/app",
        "",  # databases: the DSN's, app
        "s3",
        "company-backups",
        "",  # endpoint: AWS
        "eu-west-1",
        "ops@example.com",
        "weekly",  # not a choice: asked again
        "hourly",
    ])
    asked: list[str] = []

    def fake_input(prompt: str) -> str:
        asked.append(prompt)
        return next(answers)

    monkeypatch.setattr("builtins.input", fake_input)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    args = Namespace(config=str(tmp_path / "drdeck.toml"), cluster=None, dsn=None,
                     dsn_env=None, database=None, repository_type=None, path=None,
                     bucket=None, endpoint_url=None, region=None, recipient=None,
                     schedule=None, systemd=False, github=False, force=False)
    assert init_command(args) == 0
    out = capsys.readouterr().out
    assert "a password never goes in drdeck.toml" in out
    assert asked[0] == "Cluster name [prod]: " and "Databases to back up" in asked[3]
    assert "[app]" in asked[3]
    config = load_config_file(tmp_path / "drdeck.toml")
    cluster = config.cluster("prod")
    assert cluster.dsn == "postgresql://backup@db.internal/app"
    assert cluster.gpg_recipients == ("ops@example.com",) and cluster.rpo == 2 * 3600
    repository = config.repository_for(cluster)
    assert (repository.bucket, repository.region, repository.endpoint_url) == (
        "company-backups", "eu-west-1", None)
    assert "oops" not in (tmp_path / "drdeck.toml").read_text()
    assert (tmp_path / "drdeck-backup.cron").exists()


def test_no_questions_when_the_flags_say_everything(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def no_input(prompt: str) -> str:
        raise AssertionError(f"asked {prompt!r}")

    monkeypatch.setattr("builtins.input", no_input)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    args = Namespace(config=str(tmp_path / "drdeck.toml"), cluster="prod", dsn=None,
                     dsn_env=None, database=["app"], repository_type="local", path="b",
                     bucket=None, endpoint_url=None, region=None, recipient=None,
                     schedule="daily", systemd=False, github=False, force=False)
    assert init_command(args) == 0
    assert load_config_file(tmp_path / "drdeck.toml").cluster("prod").databases == ("app",)
