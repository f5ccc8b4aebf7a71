"""Where results, the result cache and the job ledger live: a local folder or an S3-compatible bucket.

Layout under the store root (s3://bucket/prefix/ or file:///folder/):
    outputs/<sha256[:2]>/<sha256><ext>   result files, content-addressed (writing twice is harmless)
    cache/<key>.json                     result cache: key = sha256(input bytes, parameters, template, engine version)
    ledger/<job_id>.json                 the committed result of each job id (created once: the exactly-once effect)
    deadletters/<job_id>.json            the failure result of a job the broker dead-lettered itself (created once)
    cancelled/<job_id>.json              a cancel (`sonicflow cancel`, DELETE /v1/jobs/{id}): workers skip the job

S3 credentials and endpoint come from SONICFLOW_S3_* or ~/.config/sonicflow/s3.json (sonic_core.publish.s3).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from urllib.parse import urlparse

from .protocol import JobError


def _storage_error(e: Exception) -> JobError:
    return JobError("storage_unavailable", f"{type(e).__name__}: {e}"[:400])


class Store:
    url: str

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str: ...
    def put_if_absent(self, key: str, data: bytes) -> bool: ...
    def get(self, key: str) -> bytes | None: ...
    def url_of(self, key: str) -> str: ...

    def mark_cancelled(self, job_id: str, by: str) -> None:
        """The durable half of a cancel, written before the broadcast: a worker checks it before it runs the job and
        again before it commits, so a job taken later, or by a worker that missed the broadcast, is skipped too.
        The first cancel's record stays."""
        self.put_if_absent(f"cancelled/{job_id}.json", json.dumps({"job_id": job_id, "by": by,
                                                                    "at": time.time()}).encode())

    def cancelled(self, job_id: str) -> bool:
        return self.get(f"cancelled/{job_id}.json") is not None

    def put_content(self, data: bytes, ext: str, content_type: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        key = f"outputs/{digest[:2]}/{digest}{ext}"
        url = self.put_bytes(key, data, content_type)
        return {"url": url, "sha256": digest, "size": len(data), "content_type": content_type}


class LocalStore(Store):
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.url = "file://" + self.root + "/"

    def _path(self, key: str) -> str:
        path = os.path.normpath(os.path.join(self.root, key))
        if os.path.commonpath([path, self.root]) != self.root:
            raise ValueError(f"key {key!r} escapes the store")
        return path

    def url_of(self, key: str) -> str:
        return "file://" + self._path(key)

    def _write_tmp(self, path: str, data: bytes) -> str:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # 0o666 less the umask, as any file a program writes (mkstemp's 0600 would hide results from another user's
        # worker or web server); a random name, created exclusively, as mkstemp's
        tmp = f"{path}.{secrets.token_hex(8)}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def put_bytes(self, key, data, content_type="application/octet-stream"):
        try:
            path = self._path(key)
            os.replace(self._write_tmp(path, data), path)
        except OSError as e:
            raise _storage_error(e) from e
        return self.url_of(key)

    def put_if_absent(self, key, data):
        path = self._path(key)
        try:
            tmp = self._write_tmp(path, data)
            try:
                os.link(tmp, path)  # atomic create-if-absent: fails when the name exists
                return True
            except FileExistsError:
                return False
            finally:
                os.remove(tmp)
        except OSError as e:
            raise _storage_error(e) from e

    def get(self, key):
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise _storage_error(e) from e


class S3Store(Store):
    def __init__(self, url: str, endpoint: str = ""):
        p = urlparse(url)
        self.bucket, self.prefix = p.netloc, p.path.lstrip("/")
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        self.url = f"s3://{self.bucket}/{self.prefix}"
        self.endpoint = endpoint
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from sonic_core import s3_client  # same credentials and endpoint settings as Publish

            self._client = s3_client(self.endpoint)
        return self._client

    def url_of(self, key):
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _call(self, fn, **kw):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kw)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound", "PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise
            raise _storage_error(e) from e
        except BotoCoreError as e:
            raise _storage_error(e) from e

    def put_bytes(self, key, data, content_type="application/octet-stream"):
        self._call(self.client.put_object, Key=self.prefix + key, Body=data, ContentType=content_type)
        return self.url_of(key)

    def put_if_absent(self, key, data):
        from botocore.exceptions import ClientError

        try:  # S3 conditional write (If-None-Match: *): only one writer can create the key
            self._call(self.client.put_object, Key=self.prefix + key, Body=data, IfNoneMatch="*",
                       ContentType="application/json")
            return True
        except ClientError:
            return False

    def get(self, key):
        from botocore.exceptions import ClientError

        try:
            return self._call(self.client.get_object, Key=self.prefix + key)["Body"].read()
        except ClientError:
            return None


def open_store(url: str, endpoint: str = "") -> Store:
    if url.startswith("s3://"):
        return S3Store(url, endpoint)
    if url.startswith("file://"):
        return LocalStore(url[len("file://"):])
    return LocalStore(url)
