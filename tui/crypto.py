"""GnuPG: which keys encrypt a snapshot, and the gpg commands that stream through it.

python-gnupg answers questions about keys (does this recipient have a usable
encryption key? which fingerprint?). The bytes themselves stream through a
`gpg` process started by the snapshot pipeline, pipe to pipe, so a dump of any
size passes with bounded memory.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tui.errors import PermanentFailure


class CryptoError(PermanentFailure):
    """A missing or unusable key: retrying will not find one."""


@dataclass(frozen=True)
class Recipient:
    wanted: str
    fingerprint: str
    uid: str


def gpg_binary() -> str:
    binary = shutil.which("gpg")
    if binary is None:
        raise CryptoError("gpg is not installed (Debian: apt-get install gnupg)")
    return binary


def _home_args(home: str | Path | None) -> list[str]:
    return ["--homedir", str(Path(home).expanduser())] if home else []


def resolve_recipients(wanted: list[str], home: str | Path | None) -> list[Recipient]:
    """The public key for each recipient (fingerprint, key id or email), usable to encrypt."""
    import gnupg

    gpg = gnupg.GPG(gnupghome=str(Path(home).expanduser()) if home else None)
    keys = gpg.list_keys()
    where = f"GnuPG home {home}" if home else "the default GnuPG home"
    found = []
    for item in wanted:
        needle = item.strip().upper().removeprefix("0X")
        matches = [
            key for key in keys
            if key["fingerprint"].upper().endswith(needle)
            or any(item.lower() in uid.lower() for uid in key["uids"])
        ]
        usable = [key for key in matches if _can_encrypt(key)]
        if not matches:
            raise CryptoError(f"no public key for {item!r} in {where}; import it with "
                              f"gpg --import (and --homedir if you use one)")
        if not usable:
            raise CryptoError(f"the key for {item!r} in {where} cannot encrypt "
                              "(expired, revoked or without an encryption subkey)")
        if len(usable) > 1:
            prints = ", ".join(k["fingerprint"] for k in usable)
            raise CryptoError(f"{item!r} matches several keys ({prints}); name one by fingerprint")
        key = usable[0]
        found.append(Recipient(item, key["fingerprint"], key["uids"][0] if key["uids"] else ""))
    return found


def _can_encrypt(key: dict) -> bool:
    validity = key.get("trust", "")
    if validity in ("e", "r", "d", "i"):  # expired, revoked, disabled, invalid
        return False
    return "E" in key.get("cap", "")


def encrypt_argv(fingerprints: list[str], home: str | Path | None) -> list[str]:
    # --compress-algo none: pg_dump -Fc output is already compressed; gpg would
    # spend ten times longer squeezing nothing out of it.
    argv = [gpg_binary(), "--batch", "--no-tty", "--quiet", *_home_args(home),
            "--trust-model", "always", "--compress-algo", "none", "--encrypt"]
    for fingerprint in fingerprints:
        argv += ["--recipient", fingerprint]
    return [*argv, "--output", "-"]


def decrypt_argv(home: str | Path | None, passphrase_fd: int | None = None) -> list[str]:
    # Not --quiet: it hides "public key decryption failed: Bad passphrase" (or the
    # pinentry's failure), leaving only "No secret key", which is not what happened.
    argv = [gpg_binary(), "--batch", "--no-tty", *_home_args(home)]
    if passphrase_fd is not None:
        argv += ["--pinentry-mode", "loopback", "--passphrase-fd", str(passphrase_fd)]
    return [*argv, "--decrypt", "--output", "-"]


def passphrase_from_environment() -> str | None:
    """DRDECK_GPG_PASSPHRASE, for a passphrase-protected key in unattended runs."""
    return os.environ.get("DRDECK_GPG_PASSPHRASE") or None


def explain_gpg_failure(stderr: str, home: str | Path | None, *, what: str = "this snapshot",
                        recipients: str = "the manifest's recipients") -> str:
    """gpg's stderr turned into what went wrong and what to do.

    `what` names the thing being decrypted ("WAL segment 0000...42") and `recipients`
    where the keys it was encrypted for are written down: a WAL segment has no manifest.
    """
    text = stderr.lower()
    where = f"GnuPG home {home}" if home else "the default GnuPG home"
    # before "no secret key": gpg ends with that line when it could not unlock the key too
    if "bad passphrase" in text:
        return ("the passphrase in DRDECK_GPG_PASSPHRASE does not unlock the secret key "
                f"in {where}: check it")
    if any(sign in text for sign in ("pinentry", "inappropriate ioctl")) or (
            "passphrase" in text and "fail" in text):
        return ("the secret key needs a passphrase: set DRDECK_GPG_PASSPHRASE, or use a "
                "key without one for unattended restores")
    if "no secret key" in text:
        return (f"no secret key to decrypt {what} in {where}; import the private key "
                f"it was encrypted for (see {recipients})")
    if any(word in text for word in ("mdc", "integrity", "corrupt", "invalid packet",
                                     "manipulated", "bad key", "decryption failed")):
        return "the encrypted data is corrupt: gpg's integrity check failed"
    if "no valid openpgp data" in text:
        return "the object is not GnuPG-encrypted data (wrong object, or truncated)"
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    return "gpg failed: " + (lines[-1] if lines else "no message")
