"""`drdeck init`: a commented drdeck.toml and the schedule that keeps backups coming.

The schedule runs two shipped runbooks headless: `snapshot-backup` (hourly or
daily, one run per database) and `verify-backup` (daily: a real test restore).
It is written as a crontab file (default), systemd service and timer units
(`--systemd`) and/or a GitHub Actions workflow (`--github`). Every file is
checked before anything is written, and none is replaced without `--force`.

Questions are asked (plain prompts with defaults) only in a terminal and only
for what the flags leave open; otherwise missing answers are an error that
names the flags.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from argparse import Namespace
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tui.child_python import python_module
from tui.errors import EXIT_OK, InvalidInput

REPOSITORY_NAME = "backups"
DEFAULT_CLUSTER = "prod"
DEFAULT_DSN_ENV = "DATABASE_URL"
DEFAULT_LOCAL_PATH = "~/drdeck-backups"
SCRATCH_DSN = "postgresql://postgres@localhost:5432/postgres"

# RPO written for each schedule: `drdeck status` warns at 75% of it, which is a
# little after the next backup was due, and is critical once one backup is missed.
SCHEDULES = {
    "hourly": {"rpo": "2h", "backup_cron": "17 * * * *", "calendar": "*-*-* *:17:00"},
    "daily": {"rpo": "36h", "backup_cron": "17 2 * * *", "calendar": "*-*-* 02:17:00"},
}
VERIFY_CRON = "47 3 * * *"
VERIFY_CALENDAR = "*-*-* 03:47:00"
DEFAULT_RTO = "4h"

CRON_FILE = "drdeck-backup.cron"
CONFIG_MODE = 0o600
SCHEDULE_MODE = 0o644  # cron, systemd units, the workflow: read by whoever installs them
DIRECTORY_MODE = 0o755
LOG_FILE = "drdeck-backup.log"
WORKFLOW = Path(".github") / "workflows" / "database-backup.yml"


@dataclass
class Plan:
    """What the operator chose: flags first, then answers to the prompts."""

    cluster: str = DEFAULT_CLUSTER
    dsn: str | None = None
    dsn_env: str | None = DEFAULT_DSN_ENV
    databases: list[str] = field(default_factory=list)
    repository_type: str = "local"
    path: str | None = None
    bucket: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    recipients: list[str] = field(default_factory=list)
    schedule: str = "daily"

    @property
    def encrypted(self) -> bool:
        return bool(self.recipients)


# --- the command ---------------------------------------------------------------------------


def init_command(args: Namespace) -> int:
    config_path = Path(args.config or "drdeck.toml").expanduser().absolute()
    plan = plan_from_flags(args)
    missing = missing_answers(plan)
    if missing or _asks_anyway(args):
        if sys.stdin.isatty():
            ask(plan, args)
        elif missing:
            raise InvalidInput("drdeck init needs " + " and ".join(missing)
                               + " (or run it in a terminal to be asked)")
    files = planned_files(plan, config_path, systemd=args.systemd, github=args.github)
    if not args.force:
        existing = [path for path in files if path.exists()]
        if existing:
            raise InvalidInput("not overwriting " + ", ".join(str(p) for p in existing)
                               + ": move it away, or pass --force to replace it")
    _validate(files[config_path], config_path)
    for path, text in files.items():
        # drdeck.toml may come to hold a webhook URL or a journal's password: private
        _write(path, text, CONFIG_MODE if path == config_path else SCHEDULE_MODE)
    _tell(plan, config_path, files, systemd=args.systemd, github=args.github)
    return EXIT_OK


def plan_from_flags(args: Namespace) -> Plan:
    plan = Plan()
    plan.cluster = args.cluster or plan.cluster
    if args.dsn:
        plan.dsn, plan.dsn_env = args.dsn, None
    elif args.dsn_env:
        plan.dsn_env = args.dsn_env
    plan.databases = list(args.database or [])
    if not plan.databases and plan.dsn:
        found = dsn_database(plan.dsn)
        plan.databases = [found] if found else []
    plan.repository_type = args.repository_type or ("s3" if args.bucket else "local")
    plan.path, plan.bucket = args.path, args.bucket
    plan.endpoint_url, plan.region = args.endpoint_url, args.region
    plan.recipients = list(args.recipient or [])
    plan.schedule = args.schedule or plan.schedule
    return plan


def missing_answers(plan: Plan) -> list[str]:
    missing = []
    if not plan.databases:
        missing.append("--database NAME (or a --dsn naming one)")
    if plan.repository_type == "local" and not plan.path:
        missing.append("--path DIR")
    if plan.repository_type == "s3" and not plan.bucket:
        missing.append("--bucket BUCKET")
    return missing


def _asks_anyway(args: Namespace) -> bool:
    """A terminal with no choice made at all: ask about everything, defaults shown."""
    chosen = ("cluster", "dsn", "dsn_env", "database", "repository_type", "path", "bucket",
              "recipient", "schedule")
    return not any(getattr(args, name, None) for name in chosen)


def dsn_database(dsn: str) -> str | None:
    """The database a connection string names, if it names one."""
    from urllib.parse import unquote, urlsplit

    if "://" in dsn:
        name = unquote(urlsplit(dsn).path.lstrip("/"))
        return name or None
    match = re.search(r"\bdbname\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S+))", dsn)
    if not match:
        return None
    return match.group(1) if match.group(1) is not None else match.group(2)


# --- prompts -------------------------------------------------------------------------------


def _prompt(question: str, default: str = "") -> str:
    shown = f" [{default}]" if default else ""
    try:
        answer = input(f"{question}{shown}: ").strip()
    except EOFError:
        print(file=sys.stderr)
        raise InvalidInput("drdeck init: no answer (end of input); nothing written") from None
    return answer or default


def _choice(question: str, options: tuple[str, ...], default: str) -> str:
    while True:
        answer = _prompt(f"{question} ({'/'.join(options)})", default).lower()
        if answer in options:
            return answer
        print(f"  one of: {', '.join(options)}")


def ask(plan: Plan, args: Namespace) -> None:
    """Ask for what the flags left open, each with its default."""
    from tui.redact import dsn_password

    print("drdeck init: a few questions (enter keeps the [default]; nothing is written "
          "until the end)")
    if not args.cluster:
        plan.cluster = _prompt("Cluster name", plan.cluster)
    if not (args.dsn or args.dsn_env):
        while True:
            answer = _prompt(f"Connection string, without a password (empty: read "
                             f"${DEFAULT_DSN_ENV} at run time)")
            if answer and dsn_password(answer) is not None:
                print("  a password never goes in drdeck.toml: leave it out and put it in "
                      "~/.pgpass or PGPASSWORD, or answer empty and set $DATABASE_URL")
                continue
            break
        if answer:
            plan.dsn, plan.dsn_env = answer, None
    if not args.database:
        default = (dsn_database(plan.dsn) if plan.dsn else None) or ", ".join(plan.databases)
        while True:
            answer = _prompt("Databases to back up, comma-separated", default or "")
            plan.databases = [d.strip() for d in answer.split(",") if d.strip()]
            if plan.databases:
                break
            print("  name at least one database")
    if not args.repository_type and not args.path and not args.bucket:
        plan.repository_type = _choice("Where backups go", ("local", "s3"),
                                       plan.repository_type)
    if plan.repository_type == "local" and not plan.path:
        plan.path = _prompt("Backup directory", DEFAULT_LOCAL_PATH)
    if plan.repository_type == "s3":
        while not plan.bucket:
            plan.bucket = _prompt("S3 bucket") or None
        if not args.endpoint_url:
            plan.endpoint_url = _prompt("S3 endpoint URL (empty: AWS)") or None
        if not args.region:
            plan.region = _prompt("S3 region (empty: the AWS default)") or None
    if not args.recipient:
        answer = _prompt("GnuPG recipient to encrypt for, email or fingerprint (empty: do "
                         "not encrypt)")
        plan.recipients = [answer] if answer else []
    if not args.schedule:
        plan.schedule = _choice("How often snapshot-backup runs", tuple(SCHEDULES),
                                plan.schedule)


# --- what is written ------------------------------------------------------------------------


def _toml(value: str) -> str:
    import tomlkit

    return tomlkit.string(value).as_string()


def config_text(plan: Plan, today: str | None = None) -> str:
    today = today or datetime.now(UTC).date().isoformat()
    schedule = SCHEDULES[plan.schedule]
    lines = [
        f"# drdeck.toml, written by `drdeck init` on {today}.",
        "# Edit freely: when drdeck changes a value itself, your comments stay.",
        "# Secrets never live here: a database password goes in ~/.pgpass, PGPASSWORD or",
        "# the variable named by dsn_env; S3 credentials come from the AWS chain.",
        "",
        "# Where backups go. A directory on the database's own machine does not survive",
        "# losing that machine: for the real thing use s3 (any S3-compatible store).",
        f"[repositories.{REPOSITORY_NAME}]",
    ]
    if plan.repository_type == "local":
        lines += ['type = "local"', f"path = {_toml(plan.path or DEFAULT_LOCAL_PATH)}"]
    else:
        lines += ['type = "s3"', f"bucket = {_toml(plan.bucket or '')}",
                  '# prefix = "postgres"                   # a folder inside the bucket']
        lines.append(f"endpoint_url = {_toml(plan.endpoint_url)}" if plan.endpoint_url else
                     '# endpoint_url = "https://..."          # R2, MinIO, ...: leave out '
                     'for AWS')
        lines.append(f"region = {_toml(plan.region)}" if plan.region else
                     '# region = "eu-west-1"')
        lines.append('# timeout = "30s"                        # per request, then a retry')
        lines.append("# credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile "
                     "or an instance role")
    lines += [
        "",
        "# [gpg]",
        '# home = "~/.gnupg"                       # the GnuPG home holding the keys',
        "",
        f"[clusters.{plan.cluster}]",
    ]
    if plan.dsn is not None:
        lines.append(f"dsn = {_toml(plan.dsn)}")
        lines.append("# the password: ~/.pgpass or PGPASSWORD (or use dsn_env = \"VARIABLE\")")
    else:
        env = plan.dsn_env or DEFAULT_DSN_ENV
        lines.append(f"dsn_env = {_toml(env)}")
        lines.append(f"# the connection string is read from ${env} when drdeck runs; or "
                     "write dsn = \"postgresql://backup@db.internal/app\" (no password)")
    lines.append(f"repository = {_toml(REPOSITORY_NAME)}")
    lines.append("databases = [" + ", ".join(_toml(d) for d in plan.databases) + "]"
                 "   # snapshot-backup dumps each; the first is the default")
    if plan.recipients:
        lines.append("gpg_recipients = [" + ", ".join(_toml(r) for r in plan.recipients)
                     + "]   # snapshots are encrypted for these keys")
    else:
        lines.append('# gpg_recipients = ["backup@example.com"]   # none: snapshots are NOT '
                     "encrypted (the schedule passes encrypt=false)")
    lines.append('# signed_by = ["<40-hex fingerprint>"]   # trust only manifests and '
                 "verification records these keys signed (README: the safety model)")
    rpo = schedule["rpo"]
    lines += [
        f"rpo = {_toml(rpo)}   # data you may lose: `drdeck status` warns past 75% of it, "
        "is critical past it",
        f"rto = {_toml(DEFAULT_RTO)}   # how long a restore may take: drills are measured "
        "against it",
        "# retention = { daily = 7, weekly = 4, monthly = 6 }   # what prune-snapshots keeps",
        '# base_retention = { full = 2, window = "14d" }   # what prune-base-backups keeps',
        "",
        "# [journal]",
        '# url = "postgresql://drdeck@ops-db.internal/drdeck"   # a journal shared by the team '
        "(default: SQLite in the state directory)",
        '# url = "sqlite:///var/lib/drdeck/journal.db"   # or a SQLite file: three slashes, '
        "then the absolute path",
        "",
        "# Webhooks for run_failed, rpo_breach and drill_overdue (no events: all of them).",
        "# A webhook URL is a secret: keep this file private if you write one here.",
        "# [notify]",
        "# webhooks = [",
        '#   { url = "https://hooks.slack.com/services/...", events = ["run_failed", '
        '"rpo_breach", "drill_overdue"] },',
        "# ]",
        "",
        "# [runbooks]",
        '# dirs = ["runbooks"]                     # more places to find runbooks',
        "",
    ]
    return "\n".join(lines)


def backup_args(plan: Plan) -> list[list[str]]:
    """`drdeck` arguments of each scheduled snapshot-backup (one per database)."""
    extra = [] if plan.encrypted else ["-p", "encrypt=false"]
    return [["run", "snapshot-backup", "--headless", "-p", f"cluster={plan.cluster}",
             "-p", f"database={database}", *extra] for database in plan.databases]


def verify_args(plan: Plan, target_dsn: str | None = None) -> list[list[str]]:
    """`drdeck` arguments of each scheduled verify-backup (a full test restore)."""
    target = ["-p", f"target_dsn={target_dsn}"] if target_dsn else []
    return [["run", "verify-backup", "--headless", "-p", f"cluster={plan.cluster}",
             "-p", f"database={database}", *target] for database in plan.databases]


def drdeck_executable() -> list[str]:
    """How cron or systemd starts this drdeck: an absolute path (cron's PATH is short)."""
    import shutil

    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "drdeck" and argv0.is_file():
        return [str(argv0.absolute())]
    found = shutil.which("drdeck")
    if found:
        return [str(Path(found).absolute())]
    return python_module("tui")


def cron_text(plan: Plan, config_path: Path, drdeck: list[str] | None = None,
              today: str | None = None) -> str:
    today = today or datetime.now(UTC).date().isoformat()
    drdeck = drdeck or drdeck_executable()
    log = config_path.parent / LOG_FILE
    cron_file = config_path.parent / CRON_FILE
    base = [*drdeck, "--config", str(config_path)]
    lines = [
        f"# drdeck: backups of cluster {plan.cluster}, written by `drdeck init` on {today}.",
        f"# Install: (crontab -l 2>/dev/null; cat {_shell(str(cron_file))}) | crontab -",
        f"# Output goes to {log}; a failure prints one line, which cron mails (MAILTO).",
    ]
    if plan.dsn is None:
        env = plan.dsn_env or DEFAULT_DSN_ENV
        lines.append(f"# drdeck.toml reads the connection string from ${env}, which cron does "
                     f"not set: add a line {env}=postgresql://... above these (the password "
                     "in ~/.pgpass).")
    schedule = SCHEDULES[plan.schedule]
    for when, runbook, commands in ((schedule["backup_cron"], "snapshot-backup",
                                     backup_args(plan)),
                                    (VERIFY_CRON, "verify-backup", verify_args(plan))):
        for argv, database in zip(commands, plan.databases, strict=True):
            command = " ".join(_shell(a) for a in (*base, *argv))
            lines.append(f"{when} {command} >>{_shell(str(log))} 2>&1 || echo \"drdeck: "
                         f"{runbook} of {plan.cluster}/{database} failed (exit $?): see "
                         f"{log}\"".replace("%", "\\%"))
    status = " ".join(_shell(a) for a in (*base, "status", "--notify"))
    lines += [
        "# A daily reminder of RPO breaches and overdue drills to the [notify] webhooks:",
        f"# 0 9 * * * {status} >/dev/null".replace("%", "\\%"),
        "",
    ]
    return "\n".join(lines)


def systemd_units(plan: Plan, config_path: Path, drdeck: list[str] | None = None
                  ) -> dict[str, str]:
    """drdeck-backup.{service,timer} and drdeck-verify.{service,timer}."""
    drdeck = drdeck or drdeck_executable()
    base = [*drdeck, "--config", str(config_path)]
    schedule = SCHEDULES[plan.schedule]
    env_hint = (f"# EnvironmentFile=/etc/drdeck/env   # {plan.dsn_env}=..., AWS_..., "
                "DRDECK_GPG_PASSPHRASE=..." if plan.dsn is None else
                "# EnvironmentFile=/etc/drdeck/env   # AWS_..., DRDECK_GPG_PASSPHRASE=...")
    units = {}
    for name, runbook, commands, calendar, every in (
            ("drdeck-backup", "snapshot-backup", backup_args(plan), schedule["calendar"],
             plan.schedule),
            ("drdeck-verify", "verify-backup", verify_args(plan), VERIFY_CALENDAR, "daily")):
        exec_lines = [f"ExecStart={' '.join(_systemd(a) for a in (*base, *argv))}"
                      for argv in commands]
        units[f"{name}.service"] = "\n".join([
            "[Unit]",
            f"Description=drdeck: {runbook} of cluster {plan.cluster}",
            "Wants=network-online.target",
            "After=network-online.target",
            "",
            "[Service]",
            "Type=oneshot",
            "# User=backup                      # whose ~/.pgpass and GnuPG keys drdeck uses",
            env_hint,
            f"WorkingDirectory={_systemd(str(config_path.parent))}",
            *exec_lines,
            "# A failure shows in `systemctl --failed` and `journalctl -u "
            f"{name}`; OnFailure= can page someone.",
            "",
        ])
        units[f"{name}.timer"] = "\n".join([
            "[Unit]",
            f"Description=drdeck: {runbook} of cluster {plan.cluster}, {every}",
            "",
            "[Timer]",
            f"OnCalendar={calendar}",
            "Persistent=true",
            "RandomizedDelaySec=5m",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ])
    return units


def workflow_text(plan: Plan, config_in_repo: str = "drdeck.toml") -> str:
    """A GitHub Actions workflow running snapshot-backup and verify-backup on a schedule."""
    schedule = SCHEDULES[plan.schedule]
    hourly = plan.schedule == "hourly"
    if hourly:
        triggers = [f'    - cron: "{schedule["backup_cron"]}"   # snapshot-backup, hourly (UTC)',
                    f'    - cron: "{VERIFY_CRON}"   # verify-backup, daily (UTC)']
        backup_if = [f"    if: github.event.schedule != '{VERIFY_CRON}'"]
        verify_if = [f"    if: github.event_name != 'schedule' || github.event.schedule == "
                     f"'{VERIFY_CRON}'"]
    else:
        triggers = [f'    - cron: "{schedule["backup_cron"]}"   # snapshot-backup, then '
                    "verify-backup (UTC)"]
        backup_if = []
        verify_if = ["    needs: backup"]
    secrets = [
        "#   DATABASE_URL           the cluster's connection string (drdeck.toml: dsn_env)",
        "#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION",
        "#                          credentials of the S3 repository",
    ]
    if plan.encrypted:
        secrets += [
            "#   GPG_PRIVATE_KEY        the recipient's secret key, armored",
            "#                          (gpg --export-secret-keys --armor KEY)",
            "#   GPG_PASSPHRASE         optional: its passphrase",
        ]
    secrets += [
        "#   DRDECK_JOURNAL_URL     optional: a shared PostgreSQL journal, so these runs",
        "#                          count in `drdeck drills` and `drdeck status`",
    ]

    def setup() -> list[str]:
        steps = [
            "      - uses: actions/checkout@v4",
            "      - uses: actions/setup-python@v5",
            "        with:",
            '          python-version: "3.11"',
            "      - name: PostgreSQL client programs",
            "        run: |",
            "          sudo apt-get update -q",
            "          sudo apt-get install -yq postgresql-common gnupg",
            "          sudo /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y",
            '          sudo apt-get install -yq "postgresql-client-$PG_MAJOR"',
            '          echo "DRDECK_PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin" >> "$GITHUB_ENV"',
            "      - name: Install drdeck",
            "        run: python -m pip install drdeck   # pin the version you run elsewhere",
        ]
        if plan.encrypted:
            steps += [
                "      - name: Import the GnuPG key",
                "        env:",
                "          GPG_PRIVATE_KEY: ${{ secrets.GPG_PRIVATE_KEY }}",
                "        run: printf '%s\\n' \"$GPG_PRIVATE_KEY\" | gpg --batch --import",
            ]
        return steps

    def run_steps(runbook: str, commands: list[list[str]]) -> list[str]:
        steps = []
        for argv, database in zip(commands, plan.databases, strict=True):
            command = " ".join(_shell(a) for a in ["drdeck", *argv])
            steps += [f"      - name: {_yaml(f'{runbook} {plan.cluster}/{database}')}",
                      f"        run: {_yaml(command)}"]
        return steps

    lines = [
        "# drdeck: database backups on a schedule, headless on GitHub Actions.",
        "#",
        "# snapshot-backup dumps, encrypts and uploads each database; verify-backup",
        "# downloads the newest snapshot, checks it, restores it into a scratch",
        "# PostgreSQL (a service container) and compares every table's row count.",
        "# Any failure makes drdeck exit non-zero, which fails the job: the run shows",
        "# red and GitHub emails whoever owns the schedule.",
        "#",
        "# Repository secrets (Settings > Secrets and variables > Actions):",
        *secrets,
        "#",
        "# Written by `drdeck init --github`.",
        "",
        "name: database-backup",
        "",
        "on:",
        "  schedule:",
        *triggers,
        "  workflow_dispatch: {}",
        "",
        "permissions:",
        "  contents: read",
        "",
        "concurrency:",
        "  group: database-backup",
        "  cancel-in-progress: false",
        "",
        "env:",
        f"  DRDECK_CONFIG: {_yaml(config_in_repo)}",
        "  DATABASE_URL: ${{ secrets.DATABASE_URL }}",
        "  AWS_ACCESS_KEY_ID: ${{ secrets.AWS_ACCESS_KEY_ID }}",
        "  AWS_SECRET_ACCESS_KEY: ${{ secrets.AWS_SECRET_ACCESS_KEY }}",
        "  AWS_DEFAULT_REGION: ${{ secrets.AWS_DEFAULT_REGION }}",
        "  DRDECK_JOURNAL: ${{ secrets.DRDECK_JOURNAL_URL }}",
        '  PG_MAJOR: "16"   # your server\'s major version: pg_dump must be as new',
        '  NO_COLOR: "1"',
        "",
        "jobs:",
        "  backup:",
        "    name: snapshot-backup",
        *backup_if,
        "    runs-on: ubuntu-latest",
        "    timeout-minutes: 120",
        "    steps:",
        *setup(),
        *run_steps("snapshot-backup", backup_args(plan)),
        "      - name: Inventory",
        "        if: always()",
        "        run: drdeck inventory",
        "",
        "  verify:",
        "    name: verify-backup",
        *verify_if,
        "    runs-on: ubuntu-latest",
        "    timeout-minutes: 360",
        "    services:",
        "      scratch:   # the test restore's server: your server's major version, or newer",
        "        image: postgres:16",
        "        env:",
        "          POSTGRES_HOST_AUTH_METHOD: trust",
        "        ports:",
        "          - 5432:5432",
        "        options: >-",
        '          --health-cmd "pg_isready -U postgres"',
        "          --health-interval 5s --health-timeout 5s --health-retries 20",
    ]
    if plan.encrypted:
        lines += ["    env:", "      DRDECK_GPG_PASSPHRASE: ${{ secrets.GPG_PASSPHRASE }}"]
    lines += [
        "    steps:",
        *setup(),
        *run_steps("verify-backup", verify_args(plan, SCRATCH_DSN)),
        "",
    ]
    return "\n".join(lines)


EXAMPLE = Plan(cluster="prod", dsn_env="DATABASE_URL", databases=["app"],
               repository_type="s3", bucket="backups", recipients=["backup@example.com"],
               schedule="daily")


def example_workflow() -> str:
    """examples/database-backup.yml: the workflow `init --github` writes for EXAMPLE."""
    return workflow_text(EXAMPLE)


def planned_files(plan: Plan, config_path: Path, *, systemd: bool = False,
                  github: bool = False) -> dict[Path, str]:
    """Every file init writes, by absolute path, with its text."""
    files = {config_path: config_text(plan)}
    where = config_path.parent
    if systemd:
        for name, text in systemd_units(plan, config_path).items():
            files[where / name] = text
    elif not github:
        files[where / CRON_FILE] = cron_text(plan, config_path)
    if github:
        root = _repository_root(where) or where
        try:
            config_in_repo = config_path.relative_to(root).as_posix()
        except ValueError:
            config_in_repo = config_path.name
        files[root / WORKFLOW] = workflow_text(plan, config_in_repo)
    return files


def _repository_root(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return None


def _validate(text: str, config_path: Path) -> None:
    """The configuration must load: this also refuses a password in the DSN."""
    from tui.config import load_config_text

    load_config_text(text, str(config_path), path=config_path)


def _write(path: Path, text: str, mode: int) -> None:
    """`text` at `path` with exactly `mode`, whatever the umask (000 would leave the
    configuration writable by everyone, and then drdeck itself would refuse to read it)."""
    missing = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        directory.chmod(DIRECTORY_MODE)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _tell(plan: Plan, config_path: Path, files: dict[Path, str], *, systemd: bool,
          github: bool) -> None:
    print(f"wrote {config_path} (mode {CONFIG_MODE:04o})")
    where = config_path.parent
    if systemd:
        names = [n for n in files if n.suffix in (".service", ".timer")]
        print("wrote " + ", ".join(str(n) for n in names))
        print(f"install them: sudo cp {' '.join(_shell(str(n)) for n in names)} "
              "/etc/systemd/system/ && sudo systemctl daemon-reload && "
              "sudo systemctl enable --now drdeck-backup.timer drdeck-verify.timer")
    elif not github:
        cron = where / CRON_FILE
        print(f"wrote {cron}:")
        for line in files[cron].splitlines():
            if line and not line.startswith("#"):
                print(f"  {line}")
        print(f"install it: (crontab -l 2>/dev/null; cat {_shell(str(cron))}) | crontab -")
    if github:
        workflow = next(p for p in files if p.name == WORKFLOW.name)
        print(f"wrote {workflow}: commit it with drdeck.toml, and add the repository secrets "
              "it lists (DATABASE_URL, AWS_*" + (", GPG_PRIVATE_KEY" if plan.encrypted else "")
              + ")")
        if plan.repository_type == "local":
            print("drdeck: warning: a local repository on a GitHub runner disappears with the "
                  "runner: use an s3 repository for the workflow", file=sys.stderr)
    if not plan.encrypted:
        print("drdeck: warning: no GnuPG recipient: snapshots are stored unencrypted "
              "(add gpg_recipients to drdeck.toml, and drop encrypt=false from the schedule)",
              file=sys.stderr)
    print("next: drdeck run snapshot-backup (a first backup), then drdeck status")


def _shell(value: str) -> str:
    return shlex.quote(value)


def _yaml(value: str) -> str:
    """A YAML scalar: plain when that is unambiguous, else double-quoted (JSON is YAML)."""
    import json

    if re.fullmatch(r"[A-Za-z0-9_][\w@%+=:,./' -]*", value) and ": " not in value \
            and " #" not in value and not value.endswith(":"):
        return value
    return json.dumps(value)


def _systemd(value: str) -> str:
    """One ExecStart= word: quoted when needed; % and $ escaped as systemd wants."""
    value = value.replace("%", "%%").replace("$", "$$")
    if value and not re.search(r"[\s\"'\\;]", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
