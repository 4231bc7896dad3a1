"""An S3-compatible server on loopback for the tests: moto in server mode, in a process of its
own (the stand-in for S3; nothing in the project is mocked).

The server is real HTTP on 127.0.0.1: LanceDB (Rust object_store), pyarrow's S3 filesystem and
boto3 reach it as they would reach S3, with path-style requests and fake credentials.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

KEY_ID = "testing-key-id"
SECRET = "testing-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A running server and one bucket on it."""

    endpoint: str  # http://127.0.0.1:<port>
    bucket: str

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a process at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": REGION,
        }

    @property
    def options(self) -> dict[str, str]:
        """The same, as storage options (what ``Settings`` makes of ``env``)."""
        return {
            "aws_endpoint": self.endpoint, "aws_access_key_id": KEY_ID,
            "aws_secret_access_key": SECRET, "aws_region": REGION,
        }

    def uri(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
            region_name=REGION,
        )

    def keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix``, sorted (listed with boto3, not the project's code)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def s3_server(bucket: str = "cvmatch-test") -> Iterator[S3Server]:
    """``moto_server`` on a free loopback port with ``bucket`` created; stopped on exit."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = S3Server(f"http://127.0.0.1:{port}", bucket)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{server.endpoint}/moto-api/", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
