"""Where the data directory lives (a local folder or an object store), and how to reach it.

Two libraries reach the data directory: LanceDB (the tables) and ``pyarrow.fs`` (upload blobs,
the list of tenants, erasure's removal of unreferenced files, bulk inputs given as a URI). They
take their settings in different forms; both are derived here from one dict, the storage
options of ``StoreSettings`` in LanceDB's keys (``aws_endpoint``, ``aws_region``...), so a
store reached by one is reached by the other with the same endpoint and credentials.

Nothing here imports the rest of the package, nor pyarrow until a filesystem is asked for:
``config`` reads ``options_from_env`` and stays light.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import pyarrow.fs as pafs

#: The standard AWS environment variables, each with the storage option it fills. Later
#: entries win, as in the AWS SDKs: ``AWS_REGION`` over ``AWS_DEFAULT_REGION``, the S3-only
#: endpoint over the general one.
AWS_ENV: tuple[tuple[str, str], ...] = (
    ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
    ("AWS_SESSION_TOKEN", "aws_session_token"),
    ("AWS_DEFAULT_REGION", "aws_region"),
    ("AWS_REGION", "aws_region"),
    ("AWS_ENDPOINT_URL", "aws_endpoint"),
    ("AWS_ENDPOINT_URL_S3", "aws_endpoint"),
)


class ObjectStoreError(ValueError):
    """The data directory's URI or storage options cannot describe a store."""


def options_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The storage options the standard ``AWS_*`` variables of ``environ`` give (unset or
    empty ones give none)."""
    options: dict[str, str] = {}
    for variable, key in AWS_ENV:
        value = environ.get(variable, "").strip()
        if value:
            options[key] = value
    return options


def is_local(uri: str) -> bool:
    """Whether ``uri`` is a folder on this machine (a path, or ``file://``)."""
    return "://" not in uri or uri.startswith("file://")


def lance_options(uri: str, options: Mapping[str, str] | None) -> dict[str, str] | None:
    """The ``storage_options`` LanceDB gets for the database at ``uri``: none for a local
    folder (the options are for object stores), else ``options`` with ``allow_http`` set when
    the endpoint is plain ``http://`` (an S3-compatible server on a private network or
    loopback; object_store refuses it otherwise)."""
    if is_local(uri) or not options:
        return None
    resolved = dict(options)
    endpoint = resolved.get("aws_endpoint", "")
    if endpoint.startswith("http://"):
        resolved.setdefault("allow_http", "true")
    return resolved


def filesystem(uri: str, options: Mapping[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """The ``pyarrow.fs`` filesystem of ``uri`` and the path of ``uri`` on it.

    A local folder is made absolute. ``s3://`` with options is an ``S3FileSystem`` with the
    same endpoint, region and credentials LanceDB gets; without options, and for other
    schemes (``gs://``, ``az://``), pyarrow's own resolution from the URI and the
    environment (an instance profile, the bucket's region).

    Raises:
        ObjectStoreError: the options name an endpoint that is not an ``http(s)://`` URL, or
            only one of the access key id and the secret.
    """
    import pyarrow.fs as pafs

    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    scheme = uri.split("://", 1)[0].lower()
    if scheme != "s3" or not options:
        return pafs.FileSystem.from_uri(uri)
    return _s3(options), uri.split("://", 1)[1].rstrip("/")


def _s3(options: Mapping[str, str]) -> pafs.S3FileSystem:
    import pyarrow.fs as pafs

    key, secret = options.get("aws_access_key_id"), options.get("aws_secret_access_key")
    if (key is None) != (secret is None):
        raise ObjectStoreError("S3 storage options need both aws_access_key_id and aws_secret_access_key, or neither")
    kwargs: dict[str, str] = {}
    if key is not None and secret is not None:
        kwargs |= {"access_key": key, "secret_key": secret}
    if "aws_session_token" in options:
        kwargs["session_token"] = options["aws_session_token"]
    if "aws_region" in options:
        kwargs["region"] = options["aws_region"]
    endpoint = options.get("aws_endpoint")
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ObjectStoreError(f"aws_endpoint must be an http:// or https:// URL, got {endpoint!r}")
        kwargs |= {"endpoint_override": parts.netloc, "scheme": parts.scheme}
    return pafs.S3FileSystem(**kwargs)
