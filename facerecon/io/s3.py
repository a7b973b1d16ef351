"""``s3://bucket/prefix`` behind the same interface as a local folder (reached via ``open_storage``).

S3 has no rename, so a face is published the S3 way: every file is uploaded under a staging
key, the old ``_complete.json`` marker is removed, the staged files are copied into place
(server-side), files the new version lacks are dropped, and the marker — listing every file
with size and sha256 — is written last. A reader that checks the marker never sees half a
face; a run killed midway leaves no marker, and the next publish of that face cleans up.

Endpoint, region and credentials come from the standard AWS chain (environment,
``~/.aws/config``, ``AWS_ENDPOINT_URL``), or ``endpoint_url`` for MinIO, moto, Ceph... Every
call goes through botocore's ``standard`` retry mode: exponential backoff with jitter on
throttling, 5xx and dropped connections (``AWS_MAX_ATTEMPTS``/``AWS_RETRY_MODE`` still win).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from facerecon.errors import InputImageError, StorageError
from facerecon.io.published import COMPLETE, Entry, display_key, marker_for, parse_marker, publishable_files

DEFAULT_ATTEMPTS = 8


def retry_config(max_attempts: int | None = None) -> Any:
    from botocore.config import Config

    attempts = max_attempts or int(os.environ.get("AWS_MAX_ATTEMPTS") or DEFAULT_ATTEMPTS)
    mode = os.environ.get("AWS_RETRY_MODE") or "standard"
    return Config(retries={"max_attempts": attempts, "mode": mode}, connect_timeout=10, read_timeout=120)


class S3Storage:
    """Keys are relative to the URL's prefix; input keys are read exactly as listed."""

    def __init__(self, url: str, *, endpoint_url: str | None = None, max_attempts: int | None = None) -> None:
        import boto3

        self.bucket, _, prefix = url[len("s3://"):].partition("/")
        if not self.bucket:
            raise StorageError(f"{url}: no bucket name (expected s3://bucket/prefix)")
        parts = [p for p in prefix.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise StorageError(f"{url}: '.' and '..' are not allowed in an S3 prefix")
        self.prefix = "/".join(parts)
        try:
            self.client = boto3.session.Session().client("s3", endpoint_url=endpoint_url,
                                                         config=retry_config(max_attempts))
        except Exception as exc:  # noqa: BLE001 - botocore raises many kinds for a bad region/endpoint
            raise StorageError(f"{url}: cannot set up the S3 client ({exc})") from None
        self._call("find the bucket of", "", self.client.head_bucket, Bucket=self.bucket)

    # -- helpers --------------------------------------------------------------------------------
    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key(self, key: str) -> str:
        """A key we write: relative, no '.'/'..' parts (names are sanitised by safe_relative_key)."""
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts) or "\x00" in key:
            raise StorageError(f"{display_key(key)}: not a valid key under s3://{self.bucket}/{self.prefix}")
        return self._full("/".join(parts))

    def _call(self, what: str, key: str, fn: Any, **kwargs: Any) -> Any:
        """One S3 call (botocore has already retried it); failures become one-line StorageErrors."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"s3://{self.bucket}/{display_key(key)}"
        try:
            return fn(**kwargs)
        except NoCredentialsError:
            raise StorageError(f"{where}: no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                               "AWS_PROFILE or ~/.aws/credentials)") from None
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = err.get("Code") or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
            if what == "find the bucket of" and code in ("404", "NoSuchBucket"):
                raise StorageError(f"s3://{self.bucket}: bucket does not exist") from None
            raise StorageError(f"{where}: cannot {what} ({code}: {err.get('Message') or exc})") from None
        except BotoCoreError as exc:
            raise StorageError(f"{where}: cannot {what} ({exc})") from None

    def _get_optional(self, full: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            return self._call("read", full, self.client.get_object, Bucket=self.bucket, Key=full)["Body"].read()
        return self._call("read", full, resp["Body"].read)

    def _list_raw(self, full_prefix: str) -> Iterator[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=full_prefix))
        while True:  # one page (1000 keys) at a time: a huge bucket is never held in memory
            page = self._call("list", full_prefix, lambda: next(pages, None))
            if page is None:
                return
            yield from page.get("Contents", [])

    def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i:i + 1000]]
            self._call("delete", keys[i], self.client.delete_objects, Bucket=self.bucket,
                       Delete={"Objects": batch, "Quiet": True})

    # -- the storage interface (as LocalStorage) ------------------------------------------------
    def list(self, prefix: str = "", suffixes: tuple[str, ...] | None = None, *,
             skipped: dict[str, str] | None = None) -> Iterator[Entry]:
        """``skipped`` (key -> reason) receives folder markers named like photos (``x.jpg/``)."""
        from facerecon.io.images import is_image_name

        base = f"{self.prefix}/" if self.prefix else ""
        for obj in self._list_raw(base + prefix):
            key = obj["Key"][len(base):]
            if key.endswith("/") and skipped is not None and is_image_name(key.rstrip("/")):
                skipped[key.rstrip("/")] = "a folder"
            if not key or key.endswith("/") or (suffixes and not key.lower().endswith(suffixes)):
                continue
            yield Entry(key, int(obj.get("Size", 0)), str(obj.get("ETag", "")).strip('"'))

    def read_bytes(self, key: str, max_bytes: int | None = None) -> bytes:
        """The object's bytes, streamed; with ``max_bytes`` a larger object is refused unread."""
        full = self._full(key)
        resp = self._call("read", full, self.client.get_object, Bucket=self.bucket, Key=full)
        size = int(resp.get("ContentLength") or 0)
        if max_bytes is not None and size > max_bytes:
            resp["Body"].close()
            raise InputImageError(f"{display_key(key)}: {size} bytes is larger than the limit "
                                  f"(input.max_bytes={max_bytes})")
        return self._call("read", full, resp["Body"].read)

    def write_bytes(self, key: str, data: bytes, *, fsync: bool = False) -> None:
        """One PUT: S3 shows the old object or the new one, never part of one (``fsync`` is moot)."""
        full = self._key(key)
        self._call("write", full, self.client.put_object, Bucket=self.bucket, Key=full, Body=data)

    def check_writable(self) -> None:
        """Fail before any work when DST takes no writes (permissions, missing bucket)."""
        probe = f".facerecon-write-test-{uuid.uuid4().hex[:8]}"
        self.write_bytes(probe, b"ok")
        self._call("delete", self._key(probe), self.client.delete_object, Bucket=self.bucket, Key=self._key(probe))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        full = self._key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            self._call("read", full, self.client.head_object, Bucket=self.bucket, Key=full)
        return True

    def read_optional(self, key: str) -> bytes | None:
        return self._get_optional(self._key(key))

    def complete_marker(self, prefix: str) -> dict | None:
        """The published face's marker, or None while it is absent (not yet, or mid-publish)."""
        return parse_marker(self._get_optional(self._key(f"{prefix}/{COMPLETE}")))

    def put_tree(self, local_dir: Path, prefix: str, meta: dict | None = None) -> None:
        files = publishable_files(Path(local_dir))
        marker = json.dumps(marker_for(files, meta), indent=1).encode()
        target = self._key(prefix)
        staging_root = self._key(f"_staging/{prefix}")
        staging = f"{staging_root}/{uuid.uuid4().hex[:12]}"
        for f in files:
            self._call("upload", f"{staging}/{f.name}", self.client.upload_file, Filename=str(f),
                       Bucket=self.bucket, Key=f"{staging}/{f.name}")
        self._call("delete", f"{target}/{COMPLETE}", self.client.delete_object, Bucket=self.bucket,
                   Key=f"{target}/{COMPLETE}")
        for f in files:
            self._call("copy", f"{target}/{f.name}", self.client.copy, Bucket=self.bucket, Key=f"{target}/{f.name}",
                       CopySource={"Bucket": self.bucket, "Key": f"{staging}/{f.name}"})
        keep = {f"{target}/{f.name}" for f in files}
        stale = [o["Key"] for o in self._list_raw(f"{target}/") if o["Key"] not in keep]
        stale += [o["Key"] for o in self._list_raw(f"{staging_root}/")]  # ours and any a killed run left
        self._delete_keys(stale)
        self._call("write", f"{target}/{COMPLETE}", self.client.put_object, Bucket=self.bucket,
                   Key=f"{target}/{COMPLETE}", Body=marker, ContentType="application/json")

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"
