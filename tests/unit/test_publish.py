"""Publish sinks: content-addressed names, provenance sidecars, idempotence; S3 against moto's server."""
import hashlib
import json
import os

import pytest

from sonic_core.errors import InputError, StorageError
from sonic_core.provenance import provenance
from sonic_core.publish import publish_local
from sonic_core.publish.s3 import publish_s3, s3_client, s3_settings


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "src" / "clip.mp4"
    path.parent.mkdir()
    path.write_bytes(os.urandom(300_000))
    return str(path)


@pytest.fixture
def prov():
    return provenance("lite", {"note": "test", "params": {"seed": 7}, "face_found": True})


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_publish_local(tmp_path, video, prov):
    out = str(tmp_path / "pub")
    p = publish_local(video, out, prov)
    digest = _sha(video)
    assert p.sha256 == digest and p.size == 300_000 and p.key == digest[:16] + ".mp4"
    target = os.path.join(out, p.key)
    assert p.url == "file://" + os.path.abspath(target) and _sha(target) == digest
    side = json.load(open(os.path.join(out, digest[:16] + ".json")))
    assert p.sidecar_url.endswith(digest[:16] + ".json")
    assert side["sha256"] == digest and side["size"] == 300_000
    assert side["engine"] == "lite" and side["params"] == {"seed": 7} and side["generator"] == "SonicFlow"
    assert sorted(os.listdir(out)) == sorted([p.key, digest[:16] + ".json"])  # no .part files left


def test_publish_local_is_idempotent_and_prefixed(tmp_path, video, prov):
    out = str(tmp_path / "pub")
    first, second = publish_local(video, out, prov), publish_local(video, out, prov)
    assert first == second and len(os.listdir(out)) == 2
    pre = publish_local(video, out, prov, prefix="talks/")
    assert pre.key == "talks/" + first.key and os.path.isfile(os.path.join(out, "talks", first.key))


def _bucket(endpoint, name):
    s3_client(endpoint).create_bucket(Bucket=name)


def test_publish_s3(s3_env, video, prov, monkeypatch, tmp_path):
    monkeypatch.setenv("SONICFLOW_S3_CONFIG", str(tmp_path / "none.json"))
    _bucket(s3_env, "videos")
    p = publish_s3(video, "videos", prov, prefix="out/")
    digest = _sha(video)
    assert p.key == f"out/{digest[:16]}.mp4" and p.sha256 == digest
    assert p.url == f"{s3_env}/videos/{p.key}" and p.url.startswith("http://127.0.0.1:")
    bucket, key = p.url[len(s3_env) + 1:].split("/", 1)
    client = s3_client()
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == open(video, "rb").read()
    skey = p.sidecar_url[len(s3_env) + 1:].split("/", 1)[1]
    side = json.loads(client.get_object(Bucket="videos", Key=skey)["Body"].read())
    assert skey == f"out/{digest[:16]}.json" and side["sha256"] == digest and side["engine"] == "lite"
    assert publish_s3(video, "videos", prov, prefix="out/") == p  # again: same name, no error


def test_publish_s3_wrong_bucket(s3_env, video, prov, monkeypatch, tmp_path):
    monkeypatch.setenv("SONICFLOW_S3_CONFIG", str(tmp_path / "none.json"))
    with pytest.raises(StorageError) as e:  # retryable: the store, not the input, is at fault
        publish_s3(video, "no-such-bucket-here", prov)
    assert e.value.code == "storage_error" and "no-such-bucket-here" in str(e.value) and "Fix:" in str(e.value)
    with pytest.raises(InputError) as e:
        publish_s3(video, "", prov)
    assert e.value.input_name == "bucket"


def test_s3_settings_file_then_env(tmp_path, monkeypatch):
    for key in ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY", "REGION"):
        monkeypatch.delenv(f"SONICFLOW_S3_{key}", raising=False)
    conf = tmp_path / "s3.json"
    conf.write_text(json.dumps({"endpoint": "http://minio:9000", "access_key": "file-ak", "secret_key": "file-sk",
                                "region": "eu-west-1"}))
    monkeypatch.setenv("SONICFLOW_S3_CONFIG", str(conf))
    assert s3_settings() == {"endpoint": "http://minio:9000", "access_key": "file-ak", "secret_key": "file-sk",
                             "region": "eu-west-1"}
    monkeypatch.setenv("SONICFLOW_S3_ACCESS_KEY", "env-ak")
    monkeypatch.setenv("SONICFLOW_S3_ENDPOINT", "http://other:9000")
    got = s3_settings()
    assert got["access_key"] == "env-ak" and got["endpoint"] == "http://other:9000"
    assert got["secret_key"] == "file-sk" and got["region"] == "eu-west-1"
    monkeypatch.setenv("SONICFLOW_S3_CONFIG", str(tmp_path / "missing.json"))
    assert s3_settings() == {"access_key": "env-ak", "endpoint": "http://other:9000"}
