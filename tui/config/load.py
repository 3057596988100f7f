"""Find drdeck.toml, check every part of it, and build the Config model.

All problems are collected (not just the first); each names the file, the line and
column of the offending key, and what to write instead. Nothing here raises anything
but InvalidInput (ConfigInvalid for a file that does not validate).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tui.durations import parse_duration
from tui.errors import InvalidInput, Problem
from tui.redact import dsn_password
from tui.tomlfile import Unreadable, closest, parse, read_source, type_name

from .model import (
    REPOSITORY_TYPES,
    BaseRetention,
    ClusterConfig,
    Config,
    Notify,
    Repository,
    Retention,
    Webhook,
)

KeyPath = tuple[str | int, ...]

CONFIG_NAME = "drdeck.toml"
CONFIG_ENV = "DRDECK_CONFIG"

# Cluster names become a path component and an S3 key part (<repo>/<cluster>/...).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FINGERPRINT = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")  # v4 keys; v5 keys

TOP_KEYS = {"repositories", "clusters", "gpg", "runbooks", "journal", "notify"}
REPOSITORY_KEYS = {
    "s3": {"type", "bucket", "prefix", "endpoint_url", "region", "storage_class", "timeout",
           "compression", "compression_level"},
    "local": {"type", "path", "compression", "compression_level"},
}
COMPRESSIONS = ("zstd", "none")
COMPRESSION_LEVELS = range(1, 20)  # zstd's ordinary levels (20..22 need far more memory)
CLUSTER_KEYS = {
    "dsn", "dsn_env", "repository", "databases", "gpg_recipients", "signed_by", "rpo", "rto",
    "retention", "base_retention",
}  # fmt: skip  (and each engine's table: tui.sources)
RETENTION_KEYS = {"daily", "weekly", "monthly", "monthly_storage_class"}
BASE_RETENTION_KEYS = {"full", "window"}
WEBHOOK_KEYS = {"url", "url_env", "events"}
WEBHOOK_EVENTS = ("run_failed", "rpo_breach", "drill_overdue")
PASSWORD_HINT = "put the password in ~/.pgpass or PGPASSWORD, or use dsn_env"


class ConfigInvalid(InvalidInput):
    """A drdeck.toml that does not validate; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# --- discovery ------------------------------------------------------------------------


def user_config_path() -> Path:
    """drdeck.toml in the platform's user config directory (~/.config/drdeck on Linux)."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("drdeck", appauthor=False)) / CONFIG_NAME


def search_paths() -> list[Path]:
    """Where drdeck.toml is looked for when neither --config nor $DRDECK_CONFIG is given."""
    return [Path.cwd() / CONFIG_NAME, user_config_path()]


def find_config(explicit: str | None = None) -> Path | None:
    """--config PATH, then $DRDECK_CONFIG, then ./drdeck.toml, then the user config dir.

    A file named explicitly (either way) must exist. None when nothing is found.
    """
    if explicit is not None:
        return _must_exist(explicit, f"--config {explicit}")
    from_env = os.environ.get(CONFIG_ENV, "")
    if from_env.strip():
        return _must_exist(from_env, f"${CONFIG_ENV}={from_env}")
    for candidate in search_paths():
        if candidate.is_file():
            return candidate
    return None


def _must_exist(given: str, said: str) -> Path:
    path = Path(given).expanduser()
    if path.is_dir():
        raise InvalidInput(f"{said}: is a directory, not a drdeck.toml file")
    if path.exists() and not path.is_file():
        raise InvalidInput(f"{said}: not a regular file (a drdeck.toml is one)")
    if not path.is_file():
        raise InvalidInput(f"{said}: no such file")
    return path


# --- loading --------------------------------------------------------------------------


def load_config(explicit: str | None = None) -> Config:
    """The configuration drdeck runs with: an empty Config when there is no drdeck.toml."""
    path = find_config(explicit)
    if path is None:
        return Config(searched=tuple(search_paths()))
    return load_config_file(path)


def load_config_file(path: str | Path) -> Config:
    path = Path(path)
    try:
        source, _ = read_source(path, "configuration file")
    except Unreadable as exc:
        raise ConfigInvalid([exc.problem]) from None
    return load_config_text(source, str(path), path=path)


def load_config_text(
    source: str, shown_path: str = "<config>", path: Path | None = None
) -> Config:
    """Validate TOML text. Relative paths in it are taken from `path`'s directory (or cwd)."""
    try:
        document = parse(source, shown_path)
    except Unreadable as exc:
        raise ConfigInvalid([exc.problem]) from None
    base_dir = path.absolute().parent if path is not None else Path.cwd()
    checker = _Checker(source, shown_path, base_dir)
    config = checker.build(document, path)
    if checker.problems:
        problems = sorted(set(checker.problems), key=lambda p: (p.line, p.col, p.message))
        raise ConfigInvalid(problems)
    return config


class _Checker:
    def __init__(self, source: str, path: str, base_dir: Path):
        self.source = source
        self.path = path
        self.base_dir = base_dir
        self.problems: list[Problem] = []

    def problem(self, where: KeyPath, message: str) -> None:
        # imported here: `wal fetch` loads the config once per segment, rarely a bad one
        from tui.runbook.locate import locate

        line, col = locate(self.source, where)
        self.problems.append(Problem(self.path, line, col, message))

    # --- small typed getters -----------------------------------------------------------

    def unknown_keys(self, table: dict, allowed: set[str], where: KeyPath, what: str) -> None:
        for key in table:
            if key not in allowed:
                hint = closest(key, allowed)
                suffix = f" (did you mean {hint!r}?)" if hint else ""
                self.problem((*where, key), f"unknown key {key!r} in {what}{suffix}")

    def table(self, parent: dict, key: str, where: KeyPath) -> dict | None:
        value = parent.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem((*where, key), f"{key} must be a table, not {type_name(value)}")
            return None
        return value

    def text(self, table: dict, key: str, where: KeyPath, required: bool = False,
             empty_ok: bool = False) -> str | None:  # fmt: skip
        if key not in table:
            if required:
                self.problem(where, f"missing required key {key!r}")
            return None
        value = table[key]
        if not isinstance(value, str):
            self.problem((*where, key), f"{key} must be text, not {type_name(value)}")
            return None
        if not empty_ok and not value.strip():
            self.problem((*where, key), f"{key} is empty")
            return None
        return value

    def texts(self, table: dict, key: str, where: KeyPath, what: str, one: str) -> list[str]:
        """A list of non-empty text; each bad element is reported where it stands."""
        value = table.get(key, [])
        if not isinstance(value, list):
            self.problem((*where, key), f"{key} must be a list of {what}, not "
                         f"{type_name(value)}")
            return []
        result = []
        for index, item in enumerate(value):
            here = (*where, key, index)
            if not isinstance(item, str):
                self.problem(here, f"{key}[{index}] must be text ({one}), not "
                             f"{type_name(item)}")
            elif not item.strip():
                self.problem(here, f"{key}[{index}] is empty: write {one}")
            else:
                result.append(item)
        return result

    def fingerprints(self, table: dict, key: str, where: KeyPath) -> list[str]:
        """Whole key fingerprints, upper case without spaces: trust is given to one key,
        never to whatever key matches a short id or an email."""
        result = []
        self.texts(table, key, where, "key fingerprints", "a key's full fingerprint")
        raw = table.get(key, [])
        for index, item in enumerate(raw if isinstance(raw, list) else []):
            if not isinstance(item, str) or not item.strip():
                continue  # texts() said what is wrong with it
            fingerprint = "".join(item.split()).upper().removeprefix("0X")
            if FINGERPRINT.fullmatch(fingerprint) is None:
                self.problem((*where, key, index),
                             f"{key}[{index}] {item!r} is not a whole key fingerprint (40 "
                             "hex digits: gpg --fingerprint shows it)")
            else:
                result.append(fingerprint)
        return result

    def count(self, table: dict, key: str, where: KeyPath, default: int, label: str) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            if isinstance(value, bool):
                shown = "true" if value else "false"
            else:
                shown = repr(value) if isinstance(value, int | float) else type_name(value)
            self.problem((*where, key), f"{label} must be a whole number, 0 or more, not {shown}")
            return default
        return value

    def duration(self, table: dict, key: str, where: KeyPath) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.problem((*where, key), f"{key} must be a duration in quotes, like \"{value}s\"")
            return None
        text = self.text(table, key, where)
        if text is None:
            return None
        try:
            return parse_duration(text)
        except ValueError as exc:
            self.problem((*where, key), f"bad duration for {key}: {exc}")
            return None

    def local_path(self, text: str, where: KeyPath) -> Path:
        """~ expanded; a relative path is relative to the config file's directory."""
        try:
            path = Path(text).expanduser()
        except (RuntimeError, KeyError):  # ~user for a user this machine does not have
            self.problem(where, f"{text!r}: {text.split('/')[0]!r} is no home directory on "
                         "this machine; give the path itself")
            path = Path(text)
        return path if path.is_absolute() else self.base_dir / path

    def named_tables(self, doc: dict, key: str, singular: str) -> dict[str, dict]:
        """[key.NAME] tables with valid names."""
        tables = self.table(doc, key, ()) or {}
        result = {}
        for name, spec in tables.items():
            where: KeyPath = (key, name)
            if not NAME.fullmatch(name):
                self.problem(where, f"{singular} name {name!r}: use letters, digits, '-', '_' "
                             "and '.', starting with a letter or digit")
            elif not isinstance(spec, dict):
                self.problem(where, f"[{key}.{name}] must be a table, not {type_name(spec)}")
            else:
                result[name] = spec
        return result

    # --- the document ------------------------------------------------------------------

    def build(self, doc: dict, path: Path | None) -> Config:
        self.unknown_keys(doc, TOP_KEYS, (), "drdeck.toml")
        repositories = self.repositories(doc)
        clusters = self.clusters(doc, repositories)
        gpg = self.table(doc, "gpg", ()) or {}
        self.unknown_keys(gpg, {"home"}, ("gpg",), "[gpg]")
        home = self.text(gpg, "home", ("gpg",))
        runbooks = self.table(doc, "runbooks", ()) or {}
        self.unknown_keys(runbooks, {"dirs", "defaults"}, ("runbooks",), "[runbooks]")
        dirs = self.texts(runbooks, "dirs", ("runbooks",), "directories", "a directory path")
        defaults = self.runbook_defaults(runbooks)
        return Config(
            path=path,
            repositories={r.name: r for r in repositories.values() if r is not None},
            clusters=clusters,
            gpg_home=self.local_path(home, ("gpg", "home")) if home is not None else None,
            runbook_dirs=tuple(self.local_path(d, ("runbooks", "dirs")) for d in dirs),
            journal_url=self.journal(doc),
            notify=self.notify(doc),
            runbook_defaults=defaults,
        )

    def runbook_defaults(self, runbooks: dict) -> dict[str, dict[str, str]]:
        """`[runbooks.defaults.pitr-restore] port = 5544`: values a form starts with."""
        raw = runbooks.get("defaults", {})
        where: KeyPath = ("runbooks", "defaults")
        if not isinstance(raw, dict):
            self.problem(where, "defaults must be a table of runbook names")
            return {}
        result: dict[str, dict[str, str]] = {}
        for runbook, values in raw.items():
            if not isinstance(values, dict):
                self.problem((*where, runbook), f"[runbooks.defaults.{runbook}] must be a "
                             "table of parameter = value")
                continue
            shown: dict[str, str] = {}
            for name, value in values.items():
                if isinstance(value, dict | list):
                    self.problem((*where, runbook, name), f"{name} must be a single value")
                    continue
                shown[name] = ("true" if value else "false") if isinstance(value, bool) \
                    else str(value)
            result[runbook] = shown
        return result

    def repositories(self, doc: dict) -> dict[str, Repository | None]:
        """Every named repository; None for one that is named but broken."""
        result: dict[str, Repository | None] = {}
        for name, spec in self.named_tables(doc, "repositories", "repository").items():
            result[name] = self.repository(name, spec)
        return result

    def repository(self, name: str, spec: dict) -> Repository | None:
        where: KeyPath = ("repositories", name)
        before = len(self.problems)
        kind = self.text(spec, "type", where)
        if "type" not in spec:
            self.problem(where, "missing required key 'type' (s3 or local)")
        elif kind is not None and kind not in REPOSITORY_TYPES:
            self.problem((*where, "type"),
                         f"type {kind!r} is not one of: {', '.join(REPOSITORY_TYPES)}")
        if kind not in REPOSITORY_TYPES:
            self.unknown_keys(spec, set().union(*REPOSITORY_KEYS.values()), where,
                              f"[repositories.{name}]")
            return None
        allowed = REPOSITORY_KEYS[kind]
        for key in spec:
            other = next((t for t, keys in REPOSITORY_KEYS.items() if key in keys), None)
            if key not in allowed and other is not None:
                self.problem((*where, key),
                             f"{key} goes with type = \"{other}\", not \"{kind}\"")
            elif key not in allowed:
                self.unknown_keys({key: None}, allowed, where, f"[repositories.{name}]")
        compression = self.compression(spec, where)
        if kind == "local":
            if "path" not in spec:
                self.problem(where, "a local repository needs path = \"DIRECTORY\"")
            path = self.text(spec, "path", where)
            if len(self.problems) > before or path is None:
                return None
            return Repository(name, kind, path=self.local_path(path, (*where, "path")),
                              **compression)
        if "bucket" not in spec:
            self.problem(where, "an s3 repository needs bucket = \"BUCKET\"")
        bucket = self.text(spec, "bucket", where)
        prefix = self.text(spec, "prefix", where, empty_ok=True) or ""
        endpoint_url = self.text(spec, "endpoint_url", where)
        if endpoint_url is not None and not re.match(r"https?://[^/\s]", endpoint_url):
            self.problem((*where, "endpoint_url"),
                         f"endpoint_url {endpoint_url!r} must start with http:// or https://")
        region = self.text(spec, "region", where)
        storage_class = self.text(spec, "storage_class", where)
        timeout = self.duration(spec, "timeout", where)
        if timeout is not None and not 1 <= timeout <= 3600:
            self.problem((*where, "timeout"), "timeout must be between 1s and 1h")
        if len(self.problems) > before:
            return None
        return Repository(name, kind, bucket=bucket, prefix=prefix.strip("/"),
                          endpoint_url=endpoint_url, region=region,
                          storage_class=storage_class,
                          timeout=Repository.timeout if timeout is None else timeout,
                          **compression)

    def compression(self, spec: dict, where: KeyPath) -> dict[str, Any]:
        """How what the repository stores is compressed before it is encrypted."""
        found: dict[str, Any] = {}
        algorithm = self.text(spec, "compression", where)
        if algorithm is not None:
            if algorithm in COMPRESSIONS:
                found["compression"] = algorithm
            else:
                self.problem((*where, "compression"), f"compression {algorithm!r} is not one "
                             f"of: {', '.join(COMPRESSIONS)}")
        if "compression_level" in spec:
            level = spec["compression_level"]
            if isinstance(level, bool) or not isinstance(level, int) or \
                    level not in COMPRESSION_LEVELS:
                self.problem((*where, "compression_level"), "compression_level must be a whole "
                             f"number from {COMPRESSION_LEVELS.start} to "
                             f"{COMPRESSION_LEVELS.stop - 1}, not {level!r}")
            else:
                found["compression_level"] = level
        return found

    def clusters(
        self, doc: dict, repositories: dict[str, Repository | None]
    ) -> dict[str, ClusterConfig]:
        result = {}
        for name, spec in self.named_tables(doc, "clusters", "cluster").items():
            cluster = self.cluster(name, spec, repositories)
            if cluster is not None:
                result[name] = cluster
        return result

    def cluster(
        self, name: str, spec: dict, repositories: dict[str, Repository | None]
    ) -> ClusterConfig | None:
        where: KeyPath = ("clusters", name)
        before = len(self.problems)
        # the engines' kinds are looked up only for a key that is not drdeck's own: most
        # configurations name none, and loading them costs every command's start
        kinds: list[str] = []
        if set(spec) - CLUSTER_KEYS:
            from tui.sources import source_classes

            kinds = list(source_classes())
        self.unknown_keys(spec, CLUSTER_KEYS | set(kinds), where, f"[clusters.{name}]")
        dsn = self.text(spec, "dsn", where)
        dsn_env = self.text(spec, "dsn_env", where)
        if "dsn" not in spec and "dsn_env" not in spec:
            self.problem(where, "a cluster needs dsn = \"postgresql://...\" or "
                         "dsn_env = \"VARIABLE\"")
        elif "dsn" in spec and "dsn_env" in spec:
            self.problem((*where, "dsn_env"), "give either dsn or dsn_env, not both")
        if dsn is not None and dsn_password(dsn) is not None:
            self.problem((*where, "dsn"), f"dsn contains a password: {PASSWORD_HINT} "
                         "(secrets never live in drdeck.toml)")
        if dsn_env is not None and not ENV_NAME.fullmatch(dsn_env):
            self.problem((*where, "dsn_env"), f"dsn_env {dsn_env!r} is not an environment "
                         "variable name (letters, digits and '_')")
        repository_name = self.text(spec, "repository", where)
        repository = None
        if repository_name is not None:
            if repository_name not in repositories:
                hint = closest(repository_name, set(repositories))
                known = ", ".join(repositories) or "none"
                suffix = f"did you mean {hint!r}? " if hint else ""
                self.problem((*where, "repository"),
                             f"unknown repository {repository_name!r} ({suffix}known: {known})")
            repository = repositories.get(repository_name)
        databases = self.texts(spec, "databases", where, "database names", "a database name")
        raw = spec.get("databases")
        for index, database in enumerate(raw if isinstance(raw, list) else []):
            if isinstance(database, str) and database in raw[:index]:
                self.problem((*where, "databases", index), f"duplicate database {database!r}")
        recipients = self.texts(spec, "gpg_recipients", where, "gpg recipients",
                                "a key id, fingerprint or email")
        signed_by = self.fingerprints(spec, "signed_by", where)
        rpo = self.duration(spec, "rpo", where)
        rto = self.duration(spec, "rto", where)
        retention = self.retention(spec, where, repository)
        base_retention = self.base_retention(spec, where)
        engines = self.engines(spec, where, kinds)
        if len(self.problems) > before:
            return None
        return ClusterConfig(
            name=name, dsn=dsn, dsn_env=dsn_env, repository=repository_name,
            databases=tuple(databases), gpg_recipients=tuple(recipients),
            signed_by=tuple(signed_by), rpo=rpo, rto=rto, retention=retention,
            base_retention=base_retention, engines=engines,
        )  # fmt: skip

    def engines(self, spec: dict, where: KeyPath, kinds: list[str],
                ) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
        """Each other engine's table (`<kind> = { key = "value" }`), checked against
        what the engine says it takes (tui.sources.base.Source.settings)."""
        from tui.sources import engine_for

        found = []
        for kind in [kind for kind in kinds if kind in spec]:  # in the registry's order
            engine = engine_for(kind)
            assert engine is not None
            value, here = spec[kind], (*where, kind)
            if not isinstance(value, dict):
                self.problem(here, f"{kind} must be a table: {engine.example or '{ ... }'}")
                continue
            self.unknown_keys(value, set(engine.settings), here, kind)
            settings = {}
            for key, required in engine.settings.items():
                text = self.text(value, key, here, required=required)
                if text is not None:
                    settings[key] = text
            if any(required and key not in settings
                   for key, required in engine.settings.items()):
                continue
            for key, message in engine.check_settings(settings):
                self.problem((*here, key), message)
            found.append((kind, tuple(settings.items())))
        return tuple(found)

    def retention(
        self, spec: dict, where: KeyPath, repository: Repository | None
    ) -> Retention:
        if "retention" not in spec:
            return Retention()
        value = spec["retention"]
        here = (*where, "retention")
        if not isinstance(value, dict):
            self.problem(here, "retention must be a table like "
                         "{ daily = 7, weekly = 4, monthly = 6 }, not " + type_name(value))
            return Retention()
        self.unknown_keys(value, RETENTION_KEYS, here, "retention")
        defaults = Retention()
        counts = {
            key: self.count(value, key, here, getattr(defaults, key), f"retention.{key}")
            for key in ("daily", "weekly", "monthly")
        }
        if not any(counts.values()):
            self.problem(here, "retention keeps nothing: daily, weekly and monthly are all 0")
        storage_class = self.text(value, "monthly_storage_class", here)
        if storage_class is not None and repository is not None and repository.type != "s3":
            self.problem((*here, "monthly_storage_class"),
                         "monthly_storage_class needs an s3 repository; "
                         f"{repository.name!r} is {repository.type}")
        return Retention(**counts, monthly_storage_class=storage_class)

    def base_retention(self, spec: dict, where: KeyPath) -> BaseRetention:
        if "base_retention" not in spec:
            return BaseRetention()
        value = spec["base_retention"]
        here = (*where, "base_retention")
        if not isinstance(value, dict):
            self.problem(here, 'base_retention must be a table like { full = 2, window = "14d" }'
                         ", not " + type_name(value))
            return BaseRetention()
        self.unknown_keys(value, BASE_RETENTION_KEYS, here, "base_retention")
        full = self.count(value, "full", here, BaseRetention.full, "base_retention.full")
        window = self.duration(value, "window", here)
        if full == 0 and window is None and "full" in value:
            # the newest backup is kept anyway, but a policy of nothing is a typo
            self.problem((*here, "full"), "base_retention keeps nothing: full is 0 and no "
                         "window is set")
        return BaseRetention(full=full, window=window)

    def journal(self, doc: dict) -> str | None:
        """The PostgreSQL connection string, or the SQLite file's absolute path as text."""
        from tui.journal.location import JournalUrlInvalid, parse_journal_url

        journal = self.table(doc, "journal", ()) or {}
        self.unknown_keys(journal, {"url"}, ("journal",), "[journal]")
        url = self.text(journal, "url", ("journal",))
        if url is None:
            return None
        try:
            # a relative path follows the file, like every other path in drdeck.toml
            location = parse_journal_url(url, self.base_dir, "[journal] url")
        except JournalUrlInvalid as exc:
            self.problem(("journal", "url"), str(exc))
            return None
        if isinstance(location, Path):
            return str(location)
        if dsn_password(location) is not None:
            self.problem(("journal", "url"), "url contains a password: put it in ~/.pgpass "
                         "or PGPASSWORD (secrets never live in drdeck.toml)")
            return None
        return location

    def notify(self, doc: dict) -> Notify:
        notify = self.table(doc, "notify", ()) or {}
        self.unknown_keys(notify, {"webhooks"}, ("notify",), "[notify]")
        raw = notify.get("webhooks", [])
        if not isinstance(raw, list):
            self.problem(("notify", "webhooks"), "webhooks must be a list of tables like "
                         "{ url = \"https://...\", events = [...] }")
            return Notify()
        webhooks = []
        for index, item in enumerate(raw):
            here: KeyPath = ("notify", "webhooks", index)
            if not isinstance(item, dict):
                self.problem(here, f"each webhook must be a table, not {type_name(item)}")
                continue
            self.unknown_keys(item, WEBHOOK_KEYS, here, "a webhook")
            url = self.text(item, "url", here)
            url_env = self.text(item, "url_env", here)
            if (url is None) == (url_env is None):
                self.problem(here, "a webhook needs url = \"https://...\" or url_env = "
                             "\"VARIABLE\" (a webhook URL is a secret: prefer url_env)")
                continue
            if url is not None and not url.startswith(("https://", "http://")):
                self.problem((*here, "url"), "a webhook url starts with https://")
                continue
            events = self.texts(item, "events", here, "event names", "an event name")
            for index_event, event in enumerate(events):
                if event not in WEBHOOK_EVENTS:
                    self.problem((*here, "events", index_event),
                                 f"unknown event {event!r} (known: {', '.join(WEBHOOK_EVENTS)})")
            webhooks.append(Webhook(url or "", tuple(events), url_env))
        return Notify(tuple(webhooks))
