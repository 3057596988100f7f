"""Throwaway GnuPG homes for tests."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import gnupg

# The agent of a test home:
# - loopback pinentry: python-gnupg hands passphrases over directly;
# - a fixed, minimal S2K count: by default the agent calibrates the key
#   derivation to be slow on purpose, which made generating a protected key
#   take 2-3 s and each decryption 0.5 s. Right for real keys, not for tests.
AGENT_CONF = """\
allow-loopback-pinentry
s2k-count 65536
"""

# Once the key exists, no passphrase caching: a test that gives a wrong
# passphrase after a right one must see it fail, not be let through by the
# agent's memory. Not during generation: gpg self-signs the new key with the
# passphrase the agent has just cached, and with a TTL of 0 that entry may
# already be gone (TTLs count whole seconds), so the agent would try to ask a
# person through a pinentry and generation would fail, now and then.
AGENT_CONF_NO_CACHE = AGENT_CONF + "default-cache-ttl 0\nmax-cache-ttl 0\n"


@dataclasses.dataclass
class GpgHome:
    path: Path
    gpg: gnupg.GPG
    fingerprint: str
    passphrase: str | None = dataclasses.field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        """Environment variables pointing a gpg subprocess at this home."""
        return {"GNUPGHOME": str(self.path)}


@contextlib.contextmanager
def scratch_gpg_home(
    passphrase: str | None = None, email: str = "drill@drdeck.invalid"
) -> Iterator[GpgHome]:
    """A new GnuPG home holding one EdDSA/cv25519 key; its agent killed afterwards.

    Without ``passphrase`` the secret key is unprotected.
    """
    # Short path on purpose: the agent's socket may live in the home, and
    # Unix socket paths are limited to 107 bytes.
    home = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
    try:
        (home / "gpg-agent.conf").write_text(AGENT_CONF)
        gpg = gnupg.GPG(gnupghome=str(home))
        key_params = {
            "key_type": "EDDSA",
            "key_curve": "ed25519",
            "key_usage": "sign",
            "subkey_type": "ECDH",
            "subkey_curve": "cv25519",
            "subkey_usage": "encrypt",
            "name_real": "drdeck test",
            "name_email": email,
            "expire_date": 0,
        }
        if passphrase is None:
            key_params["no_protection"] = True
        else:
            key_params["passphrase"] = passphrase
        key = gpg.gen_key(gpg.gen_key_input(**key_params))
        if not key.fingerprint:
            raise RuntimeError(f"gpg could not generate a test key in {home}:\n{key.stderr}")
        # Reloading re-reads the configuration and forgets cached passphrases.
        (home / "gpg-agent.conf").write_text(AGENT_CONF_NO_CACHE)
        _gpgconf(home, "--reload", "gpg-agent")
        yield GpgHome(path=home, gpg=gpg, fingerprint=key.fingerprint, passphrase=passphrase)
    finally:
        _gpgconf(home, "--kill", "all")
        shutil.rmtree(home, ignore_errors=True)


def _gpgconf(home: Path, *args: str) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home), *args], capture_output=True, check=False)
