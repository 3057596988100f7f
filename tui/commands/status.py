"""`drdeck status`: is every cluster restorable within its targets, right now?

Exit codes follow monitoring checks (Nagios, Icinga, Sensu, a cron wrapper):
0 ok, 1 warning, 2 critical. `--prometheus` always exits 0 once the metrics are
printed (the state is in `drdeck_status`): a textfile collector job writes them
with `drdeck status --prometheus > F.tmp && mv F.tmp F.prom`, which must not stop
updating exactly when something is wrong.
"""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from typing import Any

from tui.errors import EXIT_OK

STATE_SHOWN = {"ok": "OK", "warning": "WARNING", "critical": "CRITICAL"}

THRESHOLDS_HELP = """\
states and thresholds (per cluster; the worst sets the exit code):
  repository       unreadable: critical
  snapshot         newest complete snapshot older than the cluster's rpo: critical;
                   older than 75% of it: warning; none at all: critical
  wal              newest recoverable point in time (base backups + WAL archive, or
                   another engine's window) older than the rpo: critical; than 75%
                   of it: warning
  archiver         the server's archive_command failing (pg_stat_archiver, asked
                   through the cluster's dsn): critical; a finished WAL segment
                   waiting over 5 minutes to be archived (slow or hung
                   archive_command; timing it needs pg_monitor): warning; the server
                   cannot be asked while the repository holds its WAL archive: warning
  verification     newest verification failed: critical; older than 7 days or
                   none: warning
  drill            last drill failed/aborted/interrupted: warning; its RTO over the
                   cluster's rto (else the runbook's): warning; none recorded: warning
  due              a drill overdue (runbook cadence, monthly by default): warning

exit codes: 0 ok, 1 warning, 2 critical (--prometheus: 0 when printed; 2 on bad input)

--notify posts rpo_breach (snapshot or WAL older than the rpo, or nothing to
restore) and drill_overdue to the [notify] webhooks that want them, every time
it runs: schedule `drdeck status --notify` as often as you want to be reminded
(daily, say), separately from a frequent silent check. Undelivered notifications
are reported on stderr and do not change the exit code.

prometheus (node_exporter textfile collector), e.g. every 5 minutes:
  drdeck status --prometheus > /var/lib/node_exporter/drdeck.prom.tmp &&
    mv /var/lib/node_exporter/drdeck.prom.tmp /var/lib/node_exporter/drdeck.prom
"""


def status_command(args: Namespace) -> int:
    from tui.config import load_config
    from tui.journal.status import compute_status, prometheus_text

    config = load_config(args.config)
    names = [config.cluster(args.cluster).name] if getattr(args, "cluster", None) \
        else list(config.clusters)
    if not names:
        config.cluster()  # raises the "no clusters configured" message
    status = compute_status(config, names)
    if args.prometheus:
        sys.stdout.write(prometheus_text(status))
    elif args.json:
        json.dump(status.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_status(status)
    sys.stdout.flush()
    if args.notify:
        notify_findings(config, status)
    return EXIT_OK if args.prometheus else status.exit_code


def print_status(status: Any) -> None:
    """One line per item: state, cluster, what, why; then the verdict."""
    from tui.redact import escape_controls

    width = max((len(c.name) for c in status.clusters), default=0)
    for cluster in status.clusters:
        for item in cluster.items:
            what = item.check + (f" {item.runbook}" if item.runbook else "")
            # one line, whatever an error or a repository's record said
            reason = escape_controls(" ".join(item.reason.split()))
            print(f"{STATE_SHOWN[item.state]:<8}  {cluster.name:<{width}}  {what:<28} "
                  f"{reason}")
    counts = {state: sum(1 for c in status.clusters for i in c.items if i.state == state)
              for state in ("critical", "warning")}
    detail = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    print(f"drdeck status: {STATE_SHOWN[status.state]}" + (f" ({detail})" if detail else ""))


def findings(status: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(event, text, fields) for each RPO breach (one per cluster) and overdue drill."""
    found = []
    for cluster in status.clusters:
        breaches = [i for i in cluster.items if i.event == "rpo_breach"]
        if breaches:
            reasons = "; ".join(f"{i.check}: {i.reason}" for i in breaches)
            found.append(("rpo_breach", f"drdeck: RPO breach on cluster {cluster.name}: "
                          f"{reasons}", {
                              "cluster": cluster.name, "rpo_s": cluster.rpo_s,
                              "items": [i.to_json() for i in breaches]}))
        for item in cluster.items:
            if item.event == "drill_overdue":
                drill = f"drill {item.runbook}" if item.runbook else "restore drill"
                found.append(("drill_overdue", f"drdeck: {drill} of cluster {cluster.name} "
                              f"is overdue: {item.reason}", {
                                  "cluster": cluster.name, "runbook": item.runbook,
                                  "overdue_s": item.overdue_s, "due_at": item.at,
                                  "cadence_s": item.target_s}))
    return found


def notify_findings(config: Any, status: Any) -> int:
    from tui.notify import send_all

    return send_all(config, findings(status))
