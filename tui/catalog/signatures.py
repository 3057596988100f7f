"""Signed repository records: who wrote a manifest or a verification record.

A repository is written by others (a server's archive_command, CI, any host with
the bucket's credentials), so what it says is not evidence by itself: anyone
who can write it could forge a "verified" record or a manifest. A cluster with
`signed_by` trusts a record only when a detached OpenPGP signature beside it,
`<key>.sig`, verifies with one of those fingerprints' keys in drdeck's GnuPG
home. The manifest binds the data (its sha256) and its place (cluster,
database, stamp: tui.catalog.inventory checks them against the key), so a
signed manifest cannot be replayed under another name either.

Encryption does not do this job: a recipient's public key is public, and
anyone can encrypt to it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.catalog.manifest import ManifestInvalid, read_capped
from tui.crypto import CryptoError, passphrase_from_environment
from tui.storage.base import ObjectNotFound

SIGNATURE_SUFFIX = ".sig"
_MAX_SIGNATURE_BYTES = 64 << 10  # an armored detached signature is well under 1 KiB


class SignatureRefused(ManifestInvalid):
    """A record that is unsigned, or not signed by a trusted key: treated as forged."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: refused as forged: {why}")
        self.why = why


def signature_key(key: str) -> str:
    return key + SIGNATURE_SUFFIX


@dataclass(frozen=True)
class Signing:
    """Whose signatures a cluster's repository records need, and where their keys are."""

    signers: tuple[str, ...] = ()  # whole fingerprints, upper case
    gpg_home: str | None = None

    @property
    def required(self) -> bool:
        return bool(self.signers)

    def signer(self) -> str:
        """The first trusted fingerprint whose secret key is here: what signs new records.

        Asked before a backup starts, so a host that cannot sign fails in a second,
        not after an hour of pg_dump."""
        secret = {key["fingerprint"].upper() for key in _gpg(self.gpg_home).list_keys(True)}
        for fingerprint in self.signers:
            if fingerprint in secret:
                return fingerprint
        where = f"GnuPG home {self.gpg_home}" if self.gpg_home else "the default GnuPG home"
        raise CryptoError(f"records in this repository must be signed by one of "
                          f"{', '.join(self.signers)} (signed_by), but {where} holds the "
                          "secret key of none of them: import the signing key here, or "
                          "write backups from the host that has it")

    def sign(self, data: bytes) -> bytes:
        """A detached, armored signature of `data` by `signer()`."""
        fingerprint = self.signer()
        result = _gpg(self.gpg_home).sign(data, keyid=fingerprint, detach=True, binary=False,
                                          passphrase=passphrase_from_environment())
        if not result.data:
            from tui.crypto import explain_gpg_failure

            raise CryptoError(f"signing with {fingerprint} failed: "
                              f"{explain_gpg_failure(result.stderr, self.gpg_home)}")
        return result.data

    def problem(self, data: bytes, signature: bytes | None) -> str | None:
        """Why `data` is not trusted under this policy, or None when it is."""
        if not self.required:
            return None
        if signature is None:
            return "it is not signed, and this cluster trusts only signed records (signed_by)"
        # only a good answer is remembered: a key imported since may change a bad one
        cache_key = (self.signers, self.gpg_home, hashlib.sha256(data).digest(),
                     hashlib.sha256(signature).digest())
        with _verified_lock:
            if cache_key in _verified:
                return None
        why = self._check(data, signature)
        if why is None:
            with _verified_lock:
                if len(_verified) > 4096:
                    _verified.clear()
                _verified.add(cache_key)
        return why

    def _check(self, data: bytes, signature: bytes) -> str | None:
        # verify_data wants the signature in a file: a private directory of our own
        with tempfile.TemporaryDirectory(prefix="drdeck-sig-") as directory:
            path = Path(directory) / "record.sig"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(signature)
            verified = _gpg(self.gpg_home).verify_data(str(path), data)
        if not verified.valid:
            status = verified.status or "no valid signature"
            if verified.key_id and status == "no public key":
                return (f"its signature is by key {verified.key_id}, which is not in drdeck's "
                        "GnuPG home and not one signed_by trusts")
            return f"its signature does not verify ({status})"
        made_by = {(verified.pubkey_fingerprint or "").upper(),
                   (verified.fingerprint or "").upper()} - {""}
        if not made_by & set(self.signers):
            shown = verified.pubkey_fingerprint or verified.fingerprint
            return f"it is signed by {shown}, which is not one of the keys signed_by trusts"
        return None


UNSIGNED = Signing()

_verified: set[tuple] = set()
_verified_lock = threading.Lock()
_homes: dict[str | None, Any] = {}
_homes_lock = threading.Lock()


def _gpg(home: str | None) -> Any:
    """One python-gnupg handle per home: making one runs `gpg --version`."""
    import logging

    import gnupg

    # python-gnupg logs a warning for every gpg exit code but 0, which a bad signature
    # is: on stderr it would cut across the console; the caller says what went wrong
    logging.getLogger("gnupg").setLevel(logging.ERROR)
    with _homes_lock:
        if home not in _homes:
            _homes[home] = gnupg.GPG(gnupghome=str(Path(home).expanduser()) if home else None)
        return _homes[home]


def signing_for(config: Any, cluster: Any) -> Signing:
    """The policy of a configured cluster (UNSIGNED when it names no signers)."""
    if not cluster.signed_by:
        return UNSIGNED
    return Signing(tuple(cluster.signed_by),
                   str(config.gpg_home) if config.gpg_home else None)


def write_signed(store: Any, key: str, data: bytes, signing: Signing) -> None:
    """The record, with its signature written first: the record's presence is what
    makes it count, so a crash between the two leaves only a stray signature."""
    if signing.required:
        store.write_bytes(signature_key(key), signing.sign(data))
    store.write_bytes(key, data)


def read_signed(store: Any, key: str, signing: Signing, limit: int) -> bytes:
    """A record's bytes once its signature is trusted; SignatureRefused otherwise."""
    data = read_capped(store, key, limit)
    if not signing.required:
        return data
    try:
        signature: bytes | None = read_capped(store, signature_key(key), _MAX_SIGNATURE_BYTES)
    except ObjectNotFound:
        signature = None
    why = signing.problem(data, signature)
    if why is not None:
        raise SignatureRefused(store.location(key), why)
    return data

