"""The S3-compatible sink (boto3). Credentials and defaults, first found wins:
1. environment: SONICFLOW_S3_ENDPOINT, SONICFLOW_S3_ACCESS_KEY, SONICFLOW_S3_SECRET_KEY, SONICFLOW_S3_REGION;
2. a JSON file at $SONICFLOW_S3_CONFIG or ~/.config/sonicflow/s3.json with keys endpoint, access_key, secret_key,
   region;
3. boto3's own chain (AWS_ACCESS_KEY_ID..., ~/.aws/credentials, instance roles).
"""
from __future__ import annotations

import json
import os

from ..errors import InputError, StorageError
from . import Published, content_name, sha256_file, sidecar_bytes


def s3_settings() -> dict:
    path = os.environ.get("SONICFLOW_S3_CONFIG") or os.path.expanduser("~/.config/sonicflow/s3.json")
    conf = {}
    if os.path.isfile(path):
        with open(path) as f:
            conf = json.load(f)
    for key in ("endpoint", "access_key", "secret_key", "region"):
        env = os.environ.get(f"SONICFLOW_S3_{key.upper()}")
        if env:
            conf[key] = env
    return conf


def s3_client(endpoint: str = ""):
    import boto3
    from botocore.config import Config

    conf = s3_settings()
    # a session of its own: boto3's default session is not safe to make clients from in several threads at once
    # (the bridge's consumers and the front door's pool do)
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint or conf.get("endpoint") or None, region_name=conf.get("region") or "us-east-1",
        aws_access_key_id=conf.get("access_key"), aws_secret_access_key=conf.get("secret_key"),
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}))


def publish_s3(path: str, bucket: str, provenance: dict, prefix: str = "", endpoint: str = "") -> Published:
    """Upload `path` as <prefix><sha256[:16]>.mp4 (skipped when that object already exists: the name is the content)."""
    from boto3.exceptions import Boto3Error  # upload_file wraps ClientError in S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    if not bucket:
        raise InputError("bucket", "no bucket given for the s3 sink", "enter the bucket name")
    digest, size = sha256_file(path), os.path.getsize(path)
    key = content_name(digest, os.path.splitext(path)[1] or ".mp4", prefix)
    side_key = os.path.splitext(key)[0] + ".json"
    client = s3_client(endpoint)
    try:
        try:
            exists = client.head_object(Bucket=bucket, Key=key)["ContentLength"] == size
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
            exists = False
        if not exists:
            client.upload_file(path, bucket, key, ExtraArgs={"ContentType": "video/mp4"})
        client.put_object(Bucket=bucket, Key=side_key, Body=sidecar_bytes(provenance, digest, size),
                          ContentType="application/json")
    except (BotoCoreError, ClientError, Boto3Error) as e:
        raise StorageError(f"upload to bucket '{bucket}' failed: {e}", "check the endpoint, the bucket and the "
                           "credentials (SONICFLOW_S3_* or ~/.config/sonicflow/s3.json)") from e
    base = (client.meta.endpoint_url or "").rstrip("/")
    return Published(url=f"{base}/{bucket}/{key}", sha256=digest, size=size, key=key,
                     sidecar_url=f"{base}/{bucket}/{side_key}")
