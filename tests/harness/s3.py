"""A real S3-protocol server on 127.0.0.1 (moto's standalone server) for tests."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

REGION = "us-east-1"


@dataclasses.dataclass(frozen=True)
class S3Endpoint:
    """Where the server listens and the dummy credentials it accepts."""

    url: str
    region: str = REGION
    access_key_id: str = "drdeck-test"
    secret_access_key: str = dataclasses.field(default="drdeck-test-secret", repr=False)

    def client(self) -> Any:
        """A new boto3 S3 client for this endpoint; nothing read from ~/.aws or the environment."""
        return self._session.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    @functools.cached_property
    def _session(self) -> Any:
        # A client from a new session costs 60-180 ms (it loads the service
        # model); from a shared one, 5 ms. Sessions are not thread-safe: make
        # clients from the test's thread, then use them from any thread.
        import boto3

        return boto3.session.Session()

    @functools.cached_property
    def _admin_client(self) -> Any:
        # For bucket set-up and clean-up around every test.
        return self.client()

    def env(self) -> dict[str, str]:
        """Variables that point an AWS SDK or CLI in a subprocess at this endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ENDPOINT_URL_S3": self.url,
            # A developer's own profile must not leak into a test.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A whole environment for a subprocess: ``base`` (default os.environ)
        without its AWS_* variables, plus env()."""
        base = os.environ if base is None else base
        kept = {key: value for key, value in base.items() if not key.startswith("AWS_")}
        return kept | self.env()

    def create_bucket(self, prefix: str = "drdeck-test") -> str:
        """A new, empty bucket with a unique name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self._admin_client.create_bucket(**kwargs)
        return name

    def delete_bucket(self, name: str) -> None:
        """Empty and delete ``name``."""
        client = self._admin_client
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=name)


@contextlib.contextmanager
def moto_s3_server() -> Iterator[S3Endpoint]:
    """moto's server speaking S3 over real HTTP on 127.0.0.1, on a free port."""
    from moto.server import ThreadedMotoServer

    # Werkzeug logs every request at INFO: noise in every failing test's output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Endpoint(url=f"http://{host}:{port}")
    finally:
        server.stop()
