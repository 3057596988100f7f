"""The journal's schema, one for SQLite and PostgreSQL, and its migrations.

Times are ISO-8601 UTC text in both databases: one format, sortable, and
exactly what reports print. Migrations are numbered and applied in order;
`schema_version` remembers the last one applied.
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    [  # 1: runs, steps, checks, milestones, measures, locks
        """create table runs (
            id text primary key,
            runbook text not null,
            runbook_sha256 text not null,
            title text not null,
            scenario text not null,
            mode text not null,
            operator text not null,
            host text not null,
            pid integer not null,
            started_at text not null,
            ended_at text,
            heartbeat_at text not null,
            status text not null,
            params_json text not null,
            rto_s double precision,
            rto_target_s double precision,
            rpo_s double precision,
            rpo_target_s double precision,
            error text,
            lock_key text,
            resumes integer not null default 0,
            dry_run integer not null default 0
        )""",
        "create index runs_runbook_started on runs (runbook, started_at)",
        "create index runs_status on runs (status)",
        """create table steps (
            run_id text not null,
            step_id text not null,
            position integer not null,
            title text not null,
            action text not null,
            status text not null,
            attempts integer not null default 0,
            started_at text,
            ended_at text,
            duration_s double precision,
            operator_wait_s double precision not null default 0,
            error text,
            reason text,
            command text,
            output_tail text not null default '',
            captured text,
            primary key (run_id, step_id)
        )""",
        """create table checks (
            run_id text not null,
            step_id text not null,
            name text not null,
            ok integer not null,
            detail text not null,
            at text not null
        )""",
        "create index checks_run on checks (run_id)",
        """create table milestones (
            run_id text not null,
            name text not null,
            elapsed_s double precision not null,
            at text not null
        )""",
        """create table measures (
            run_id text not null,
            step_id text not null,
            name text not null,
            value double precision not null,
            unit text not null,
            detail text not null,
            at text not null
        )""",
        """create table locks (
            lock_key text primary key,
            run_id text not null,
            taken_at text not null
        )""",
    ],
    [  # 2: where the runbook was read from, so a resume reads the same file
        "alter table runs add column runbook_path text",
    ],
    [  # 3: the forecast made before the run started, to hold against what it took
        "alter table runs add column forecast_json text",
    ],
    [  # 4: every event of a run as `--json` prints it, in order, for whoever follows it
        """create table events (
            run_id text not null,
            seq integer not null,
            body text not null,
            primary key (run_id, seq)
        )""",
    ],
]

LATEST = len(MIGRATIONS)
