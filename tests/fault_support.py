"""What the fault tests share: a relay that breaks the way S3 servers and networks do, a
deck that backs up and restores through the real CLI, and readers for a run's events.

The relay is real sockets between botocore and moto: when it "dies", the connections in
flight are reset and new ones refused, exactly as when the server process is gone.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from backup_support import Deck, write_config
from cli_support import REPO
from harness.relay import request_line

CLUSTER, DATABASE, TARGET = "prod", "app", "restored"
PREFIX = "pg"  # the S3 repositories' prefix



# --- runbooks ----------------------------------------------------------------------------


def fast_runbooks(folder: Path, names: tuple[str, ...] = ("snapshot-backup",
                                                          "snapshot-restore")) -> dict[str, Path]:
    """Copies of shipped runbooks with every retry_delay cut to 0.1 s (nothing else)."""
    copies = {}
    for name in names:
        text = re.sub(r'retry_delay = "[^"]*"', 'retry_delay = "0.1s"',
                      (REPO / "runbooks" / f"{name}.toml").read_text())
        copies[name] = folder / f"{name}.toml"
        copies[name].write_text(text)
    return copies


# --- a deck on one cluster and one repository ----------------------------------------------


def s3_repository_toml(url: str, bucket: str, region: str = "us-east-1") -> str:
    return (f'[repositories.backups]\ntype = "s3"\nbucket = "{bucket}"\nprefix = "{PREFIX}"\n'
            f'endpoint_url = "{url}"\nregion = "{region}"')


def local_repository_toml(root: Path) -> str:
    return f'[repositories.backups]\ntype = "local"\npath = "{root}"'


@dataclass
class SnapshotDeck(Deck):
    """drdeck.toml for a seeded cluster, a repository and a GnuPG home; backs up and
    restores through the real CLI with the fast runbook copies."""

    cluster: Any = None
    repository: str = ""  # its [repositories.backups] table
    gpg_home: Path | None = None
    recipients: list[str] = field(default_factory=list)
    runbooks: dict[str, Path] = field(default_factory=dict)

    def configure(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        write_config(self.config, cluster=self.cluster, repository=self.repository,
                     gpg_home=self.gpg_home, recipients=self.recipients)

    def backup(self, *params: str) -> tuple[Any, list[dict]]:
        return self.run_json("run", str(self.runbooks["snapshot-backup"]), *params)

    def restore(self, *params: str) -> tuple[Any, list[dict]]:
        return self.run_json("run", str(self.runbooks["snapshot-restore"]),
                             "-p", f"target_db={TARGET}", *params, "--yes")

    def inventory(self) -> dict:
        proc = self.run("inventory", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [cluster] = json.loads(proc.stdout)["clusters"]
        return cluster

    def target_exists(self) -> bool:
        return bool(self.cluster.scalar("select count(*) from pg_database where datname = %s",
                                        (TARGET,)))


# --- reading a run's events ----------------------------------------------------------------


def failure(events: list[dict]) -> tuple[str, str, int]:
    """(step, error, attempts) of the step that failed the run."""
    [failed] = [e for e in events if e["event"] == "step_finished" and e["status"] == "failed"]
    return failed["step"], failed["error"], failed["attempts"]


def steps_started(events: list[dict]) -> list[str]:
    return list(dict.fromkeys(e["step"] for e in events if e["event"] == "step_started"))


def output_lines(events: list[dict], step: str) -> list[str]:
    return [e["line"] for e in events if e["event"] == "output" and e["step"] == step]


def workdir_of(events: list[dict]) -> Path:
    [started] = [e for e in events if e["event"] == "run_started"]
    return Path(started["workdir"])


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


# --- a relay that breaks like S3 servers do --------------------------------------------------


class FaultRelay:
    """A TCP relay on 127.0.0.1 in front of an S3-protocol server, with two faults:

    - ``die_after_upload(n)``: once ``n`` bytes of PUT requests (part uploads, whole
      objects) have passed, the server "dies": every connection is reset and new ones
      are refused, until ``come_back()`` listens again on the same port;
    - ``stall(when, after, seconds, times)``: the next ``times`` responses to requests
      whose first line satisfies ``when`` stop for ``seconds`` after ``after`` bytes
      (headers included; None: right after the headers), then go on: a server or a
      link that hangs mid-body.

    ``requests`` keeps each request's first line (without the HTTP version) and Range.
    """

    def __init__(self, upstream: str):
        address = urlsplit(upstream)
        self.upstream = (address.hostname or "127.0.0.1", address.port or 80)
        self.requests: list[str] = []
        self.uploaded = 0
        self._upload_budget: int | None = None
        self._stall: tuple[Callable[[str], bool], int | None, float] | None = None
        self._stalls_left = 0
        self.stalled: list[str] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.port = 0
        self._listen()
        self.url = f"http://127.0.0.1:{self.port}"

    # --- faults --------------------------------------------------------------------

    def die_after_upload(self, budget: int) -> None:
        with self._lock:
            self.uploaded, self._upload_budget = 0, budget

    def stall(self, when: Callable[[str], bool], after: int | None, seconds: float,
              times: int = 1) -> None:
        with self._lock:
            self._stall, self._stalls_left = (when, after, seconds), times

    @property
    def dead(self) -> bool:
        return self._listener is None

    def die(self) -> None:
        """The server process is gone: connections reset, new ones refused."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        if listener is not None:
            # close() alone leaves the socket listening while accept() blocks on it
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                # RST rather than FIN: what a client sees when a process dies
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00"
                                b"\x00\x00\x00\x00")
            with contextlib.suppress(OSError):
                sock.close()

    def come_back(self) -> None:
        """The server is up again, at the same address, with no fault armed."""
        with self._lock:
            self._upload_budget = None
            self._stall, self._stalls_left = None, 0
        if self._listener is None:
            self._listen()

    close = die

    # --- plumbing --------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # died meanwhile
                    client.close()
                    server.close()
                    continue
                self._sockets += [client, server]
            state: dict[str, Any] = {"method": "", "stall": None, "sent": 0}
            threading.Thread(target=self._requests, args=(client, server, state),
                             daemon=True).start()
            threading.Thread(target=self._responses, args=(server, client, state),
                             daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket,
                  state: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                request = request_line(data)
                if request is not None:
                    self.requests.append(request)
                    state["method"] = request.split(" ")[0]
                    with self._lock:
                        stall = self._stall
                        if stall is not None and self._stalls_left > 0 and stall[0](request):
                            self._stalls_left -= 1
                            self.stalled.append(request)
                            state["stall"], state["sent"] = stall[1:], 0
                if state["method"] == "PUT":
                    with self._lock:
                        self.uploaded += len(data)
                        dies = (self._upload_budget is not None
                                and self.uploaded >= self._upload_budget)
                    if dies:
                        self.die()
                        return
                server.sendall(data)
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_WR)

    def _responses(self, server: socket.socket, client: socket.socket,
                   state: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                stall, sent = state["stall"], state["sent"]
                if stall is not None and stall[0] is None and b"\r\n\r\n" in data:
                    stall = state["stall"] = (sent + data.index(b"\r\n\r\n") + 4, stall[1])
                if stall is not None and stall[0] is not None and sent + len(data) >= stall[0]:
                    after, seconds = stall
                    client.sendall(data[: max(0, after - sent)])
                    time.sleep(seconds)
                    data = data[max(0, after - sent):]
                    state["stall"] = None
                client.sendall(data)
                state["sent"] += len(data)
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


# --- disks that fill up ----------------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(size: str) -> Iterator[Path | None]:
    """A tmpfs of ``size`` ("256k"), or None where mounting is not allowed."""
    mountpoint = Path(tempfile.mkdtemp(prefix="drdeck-full-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(mountpoint)], capture_output=True, check=False)
    try:
        yield mountpoint if mounted.returncode == 0 else None
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "--lazy", str(mountpoint)], capture_output=True,
                           check=False)
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


# --- GnuPG homes that are not quite right -------------------------------------------------------

AGENT_CONF = "allow-loopback-pinentry\ns2k-count 65536\ndefault-cache-ttl 0\nmax-cache-ttl 0\n"


@dataclass
class KeyHome:
    path: Path
    fingerprint: str

    def gpg(self, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(["gpg", "--homedir", str(self.path), "--batch", "--yes", *args],
                                input=data, capture_output=True, check=False)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        return result

    def fake_time(self, when: str | None) -> None:
        """Make gpg (run by drdeck, in this home) believe it is ``when`` ("20200101T120000")."""
        conf = self.path / "gpg.conf"
        if when is None:
            conf.unlink(missing_ok=True)
        else:
            conf.write_text(f"faked-system-time {when}!\n")


@contextlib.contextmanager
def key_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))  # short: the agent's socket
    (home / "gpg-agent.conf").write_text(AGENT_CONF)
    try:
        yield home
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                       capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def expired_key(email: str = "old-backup@drdeck.invalid") -> Iterator[KeyHome]:
    """A home whose only key (EdDSA, cv25519 encryption subkey, no passphrase) was made on
    2020-01-01 and expired a day later. gpg refuses an expiry date in the past, so the
    key is made with a faked system time: a real key, really expired."""
    with key_home() as path:
        then = ["--faked-system-time", "20200101T000000!", "--passphrase", ""]
        made = subprocess.run(["gpg", "--homedir", str(path), "--batch", *then,
                               "--quick-gen-key", f"old backup key <{email}>", "ed25519",
                               "sign", "1d"], capture_output=True, check=False)
        assert made.returncode == 0, made.stderr.decode(errors="replace")
        home = KeyHome(path, "")
        listing = home.gpg("--with-colons", "--list-keys").stdout.decode()
        home.fingerprint = next(line.split(":")[9] for line in listing.splitlines()
                                if line.startswith("fpr:"))
        home.gpg(*then, "--quick-add-key", home.fingerprint, "cv25519", "encr", "1d")
        yield home


@contextlib.contextmanager
def public_key_only(source: Path, fingerprint: str) -> Iterator[KeyHome]:
    """A home holding the public half of ``fingerprint`` (from ``source``), and no secret."""
    with key_home() as path:
        exported = KeyHome(source, fingerprint).gpg("--export", fingerprint).stdout
        home = KeyHome(path, fingerprint)
        home.gpg("--import", data=exported)
        assert not home.gpg("--with-colons", "--list-secret-keys").stdout.strip()
        yield home
