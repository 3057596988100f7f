"""`drdeck docs`: backup-policy.md and recovery-runbook.md from a real drdeck.toml, real
runbooks and runs made through the CLI."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tui.journal.report import measured_text
from tui.journal.store import Journal

from cli_support import drdeck, json_events

SECRET = "docs-secret-9a8b7c6d"
AWS_SECRET = "aws-secret-should-never-appear-1234"

DRILL = """
[runbook]
name = "snapshot-drill"
title = "Restore last night's snapshot"
scenario = "snapshot"
rto = "2h"
rpo = "24h"
cadence = "7d"
contacts = ["Alice Oncall <alice@example.com>", "DBA team #dba"]
description = \"\"\"
Restores the newest snapshot into a scratch database and checks it.
\"\"\"

[params.token]
type = "secret"
help = "API token for the status page"

[params.target_db]
type = "string"
default = "scratch"
help = "Where to restore"

[[steps]]
id = "fetch"
title = "Fetch the snapshot"
action = "shell"
description = "Downloads and decrypts it."
timeout = "10m"
with = { command = "echo fetching into ${target_db} with $T; sleep 0.2", env = { T = "${token}" } }

[[steps]]
id = "count"
title = "Count the rows"
action = "shell"
confirm = "Count rows in ${target_db}?"
with = { command = ["echo", "select count(*) from accounts"] }

[[steps.checks]]
name = "rows are there"
command = "echo 100000"
expect = { contains = "100000" }

[[steps]]
id = "restored"
title = "Service restored"
action = "milestone"
with = { name = "service-restored" }
"""

BACKUP = """
[runbook]
name = "nightly-backup"
title = "Nightly backup"
scenario = "backup"

[params.cluster]
type = "string"
default = ""

[params.fail]
type = "bool"
default = false

[[steps]]
id = "dump"
title = "Dump"
action = "shell"
with = { command = "echo dumping ${cluster}" }

[[steps]]
id = "fail"
title = "Fail when asked"
action = "shell"
when = "${fail}"
with = { command = "exit 1" }
"""


def write_setup(root: Path) -> tuple[Path, Path]:
    books = root / "books"
    books.mkdir()
    (books / "snapshot-drill.toml").write_text(DRILL)
    (books / "nightly-backup.toml").write_text(BACKUP)
    config = root / "drdeck.toml"
    config.write_text(f"""# a test configuration
[repositories.vault]
type = "local"
path = "{root / 'vault'}"

[repositories.cloud]
type = "s3"
bucket = "acme-pg-backups"
prefix = "prod/eu"
region = "eu-west-1"
endpoint_url = "https://s3.eu-west-1.amazonaws.com"
storage_class = "STANDARD_IA"

[clusters.prod]
dsn = "postgresql://app@db.internal:5432/app"
repository = "vault"
databases = ["app", "billing"]
gpg_recipients = ["backup@example.com", "DEADBEEF00112233"]
rpo = "1h"
rto = "4h"
retention = {{ daily = 5, weekly = 3, monthly = 12 }}

[clusters.analytics]
dsn = "postgresql://ro@warehouse/analytics"
repository = "cloud"
rpo = "1d"
retention = {{ monthly_storage_class = "GLACIER" }}

[runbooks]
dirs = ["{books}"]
""")
    return books, config


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("docs")
    _, config = write_setup(root)
    state = root / "state"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return drdeck("--config", str(config), *args, state_dir=state, cwd=root,
                      AWS_SECRET_ACCESS_KEY=AWS_SECRET, AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
                      DRDECK_SECRET_TOKEN=SECRET)

    ids = []
    for _ in range(2):
        proc = run("run", "snapshot-drill", "--yes", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        ids.append(json_events(proc.stdout)[0]["run_id"])
    for extra in ([], [], ["-p", "fail=true"]):
        proc = run("run", "nightly-backup", "-p", "cluster=prod", *extra, "--json")
        assert proc.returncode == (1 if extra else 0), proc.stdout + proc.stderr
    proc = run("docs", "--out", str(root / "out"))
    assert proc.returncode == 0, proc.stderr
    return {"root": root, "config": config, "state": state, "run": run, "ids": ids,
            "stdout": proc.stdout, "out": root / "out"}


def section(text: str, heading: str) -> str:
    """From `heading` to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(heading + "\n")
    rest = text[start + len(heading) + 1:]
    following = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return heading + "\n" + (rest[:following.start()] if following else rest)


def measured(setup: dict) -> tuple[list[float], list[float]]:
    """The drills' RTOs and their fetch steps' durations, as the journal has them."""
    journal = Journal(str(setup["state"] / "journal.sqlite"))
    try:
        details = [journal.run(run_id) for run_id in setup["ids"]]
    finally:
        journal.close()
    rtos = sorted(d.run.rto_s for d in details)
    fetches = sorted(s.duration_s for d in details for s in d.steps if s.step_id == "fetch")
    return rtos, fetches


def test_it_prints_what_it_wrote(setup) -> None:
    out = setup["out"]
    assert setup["stdout"].splitlines() == [str(out / "backup-policy.md"),
                                            str(out / "recovery-runbook.md")]
    assert sorted(p.name for p in out.iterdir()) == ["backup-policy.md", "recovery-runbook.md"]


def test_the_backup_policy_follows_the_config_and_the_journal(setup) -> None:
    policy = (setup["out"] / "backup-policy.md").read_text()
    prod = section(policy, "## Cluster `prod`")
    assert "Databases: `app`, `billing`." in prod
    assert "| RPO | 1h |" in prod and "| RTO | 4h |" in prod
    assert "- `snapshot-drill` (Restore last night's snapshot): RTO 2h, RPO 1d" in prod

    schedule = section(prod, "### Backup schedule")
    row = next(line for line in schedule.splitlines() if "`nightly-backup`" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:5] == ["Nightly backup (`nightly-backup`)", "backup", "3", "2", "1"]
    assert re.fullmatch(r"\d+\.\d+s", cells[5])  # the runs came a moment apart
    assert cells[6].endswith(" failed")  # the newest run and its result
    assert "(`snapshot-backup`)" in schedule and "(`verify-backup`)" in schedule

    retention = section(prod, "### Retention")
    assert "| daily (newest of each day) | 5 | - |" in retention
    assert "| weekly (newest of each ISO week) | 3 | - |" in retention
    assert "| monthly (newest of each month) | 12 | - |" in retention
    assert f"local directory `{setup['root'] / 'vault'}`" in section(prod, "### Storage")
    encryption = section(prod, "### Encryption")
    assert "- `backup@example.com`" in encryption and "- `DEADBEEF00112233`" in encryption

    analytics = section(policy, "## Cluster `analytics`")
    assert "| RPO | 1d |" in analytics and "| RTO | not set |" in analytics
    assert "S3 bucket `acme-pg-backups`, prefix `prod/eu`" in analytics
    assert "region: eu-west-1" in analytics and "Storage class: STANDARD_IA" in analytics
    assert "| daily (newest of each day) | 7 | STANDARD_IA |" in analytics
    assert "| monthly (newest of each month) | 6 | GLACIER |" in analytics
    assert "**Not encrypted**" in analytics
    # the backups ran for prod (-p cluster=prod), not for analytics
    row = next(line for line in analytics.splitlines() if "`nightly-backup`" in line)
    assert "| backup | 0 | 0 | 0 | - | never |" in row

    drills = section(policy, "## Recovery drills")
    row = next(line for line in drills.splitlines() if "`snapshot-drill`" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:7] == ["snapshot", "2h", "1d", "7d",
                          "Alice Oncall <alice@example.com>; DBA team #dba", cells[6]]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", cells[6])
    assert cells[8].startswith("in 6d")
    shipped = next(line for line in drills.splitlines() if "`pitr-restore`" in line)
    assert "never drilled: due now" in shipped


def test_the_recovery_runbook_has_contacts_steps_commands_and_estimates(setup) -> None:
    book = (setup["out"] / "recovery-runbook.md").read_text()
    contacts = section(book, "## Contacts")
    assert "- Alice Oncall <alice@example.com> (for `snapshot-drill`)" in contacts
    assert "- DBA team #dba (for `snapshot-drill`)" in contacts

    drill = section(book, "## Restore last night's snapshot")
    assert "Restores the newest snapshot into a scratch database and checks it." in drill
    assert "- Scenario: snapshot; RTO target 2h, RPO target 1d" in drill
    assert "DRDECK_SECRET_TOKEN=... drdeck run snapshot-drill" in drill
    assert "| `token` | secret | (required) | API token for the status page |" in drill
    assert "| `target_db` | string | `scratch` | Where to restore |" in drill

    rtos, fetches = measured(setup)
    estimate = next(line for line in drill.splitlines() if "Estimated time" in line)
    assert (f"from 2 successful drills: median {measured_text(sum(rtos) / 2)}, worst "
            f"{measured_text(rtos[-1])} (start to service restored)") in estimate

    fetch = section(drill, "#### 1. Fetch the snapshot")
    assert (f"estimated time: median {measured_text(sum(fetches) / 2)}, worst "
            f"{measured_text(fetches[-1])} (2 successful runs)") in fetch
    assert "- Timeout 10m" in fetch and "Downloads and decrypts it." in fetch
    # the command as the runbook writes it: templates unrendered
    assert "```sh\necho fetching into ${target_db} with $T; sleep 0.2\n```" in fetch
    count = section(drill, "#### 2. Count the rows")
    assert '["echo", "select count(*) from accounts"]' in count
    assert "- Asks for confirmation: Count rows in ${target_db}?" in count
    assert "- rows are there: command `echo 100000` — expects contains '100000'" in count
    assert "- `name = \"service-restored\"`" in section(drill, "#### 3. Service restored")

    # the shipped restore runbooks are scenarios too; backups are not
    assert "## Restore to a point in time\n" in book
    assert "## Nightly backup" not in book and "## Take an encrypted snapshot" not in book


def test_no_secret_and_no_credential_in_any_document(setup) -> None:
    for path in setup["out"].iterdir():
        text = path.read_text()
        assert SECRET not in text, path
        assert AWS_SECRET not in text and "AKIDEXAMPLE" not in text, path


def test_documents_are_replaced_with_what_the_journal_says_now(setup, tmp_path: Path) -> None:
    out = tmp_path / "again"
    out.mkdir()
    (out / "backup-policy.md").write_text("stale")
    proc = setup["run"]("run", "snapshot-drill", "--yes", "--json")
    assert proc.returncode == 0, proc.stderr
    proc = setup["run"]("docs", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["backup-policy.md", "recovery-runbook.md"]
    assert "stale" not in (out / "backup-policy.md").read_text()
    assert "from 3 successful drills" in (out / "recovery-runbook.md").read_text()


def test_the_default_place_is_docs_generated_under_the_current_directory(setup) -> None:
    proc = setup["run"]("docs")
    assert proc.returncode == 0, proc.stderr
    where = setup["root"] / "docs" / "generated"
    assert proc.stdout.split() == [str(where / "backup-policy.md"),
                                   str(where / "recovery-runbook.md")]
    assert (where / "recovery-runbook.md").read_text().startswith("# Recovery runbook\n")


def test_an_unwritable_place_is_a_clear_error(setup, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = setup["run"]("docs", "--out", str(blocker))
    assert proc.returncode == 2 and "not a directory" in proc.stderr
    proc = setup["run"]("docs", "--out", str(blocker / "below"))
    assert proc.returncode == 2 and "cannot write into" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_without_a_config_it_still_writes_what_it_knows(tmp_path: Path) -> None:
    proc = drdeck("docs", "--out", str(tmp_path / "out"), state_dir=tmp_path / "state",
                  cwd=tmp_path, DRDECK_CONFIG=str(tmp_path / "none.toml"))
    assert proc.returncode == 2 and "none.toml" in proc.stderr  # a named config must exist
    proc = drdeck("docs", "--out", str(tmp_path / "out"), state_dir=tmp_path / "state",
                  cwd=tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    assert proc.returncode == 0, proc.stderr
    policy = (tmp_path / "out" / "backup-policy.md").read_text()
    assert "No cluster is configured" in policy
    assert "(`pitr-restore`)" in policy  # the shipped runbooks are always there
