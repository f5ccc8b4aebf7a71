"""Signed download links (issue #10, Low): a revoked key's links stop working, and the link secret can be rotated
(`sonicflow api rotate-link-secret`), the previous one kept valid for a grace period; every running front door picks
the rotation up without a restart."""
from __future__ import annotations

import hashlib
import os
import subprocess

import requests

from .conftest import PY, ROOT, submit, wait_until


def _finished_job(fd, key: str) -> str:
    """A job that succeeded with a video in the front door's store; its id."""
    job_id = submit(fd, key).json()["id"]
    video = b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000)
    digest = hashlib.sha256(video).hexdigest()
    path = fd.store / "outputs" / digest[:2] / f"{digest}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(video)
    fd.publish_result({"version": 1, "job_id": job_id, "status": "succeeded", "engine": "lite", "values": {},
                       "outputs": [{"name": "video", "url": f"file://{path}", "sha256": digest, "size": len(video),
                                    "content_type": "video/mp4"}]})
    wait_until(lambda: fd.jobstore.get_job(job_id)["status"] == "succeeded", 30, "the result applied")
    return job_id


def _link(fd, key: str, job_id: str) -> str:
    job = requests.get(f"{fd.url}/v1/jobs/{job_id}", headers={"X-API-Key": key}, timeout=10).json()
    return job["results"][0]["url"]


def _download(fd, link: str) -> int:
    return requests.get(fd.url + link, timeout=10).status_code


def test_links_stop_working_when_their_key_is_revoked(frontdoor_factory):
    fd = frontdoor_factory()
    rec = fd.key_record()
    link = _link(fd, rec["api_key"], _finished_job(fd, rec["api_key"]))
    assert _download(fd, link) == 200
    assert fd.jobstore.revoke_key(rec["id"])
    r = requests.get(fd.url + link, timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == "key_revoked"


def _rotate(fd, grace_hours: float) -> None:
    subprocess.run([PY, os.path.join(ROOT, "sonicflow_cli.py"), "api", "rotate-link-secret", "--db", fd.db_url,
                    "--table-prefix", fd.table_prefix, "--grace-hours", str(grace_hours)], cwd=ROOT, check=True,
                   capture_output=True, timeout=60)


def test_link_secret_rotation_with_a_grace_period(frontdoor_factory):
    fd = frontdoor_factory(env={"SONICFLOW_API_RECONCILE_AFTER_S": "2"})  # its upkeep runs every second
    key = fd.key()
    job_id = _finished_job(fd, key)
    first = _link(fd, key, job_id)

    _rotate(fd, 1)
    wait_until(lambda: _link(fd, key, job_id) != first, 20, "the running front door signing with the new secret")
    second = _link(fd, key, job_id)
    assert _download(fd, second) == 200 and _download(fd, first) == 200  # the old secret, within its grace

    _rotate(fd, 0)  # no grace: links of the two earlier secrets stop working
    wait_until(lambda: _link(fd, key, job_id) != second, 20, "the second rotation picked up")
    assert _download(fd, _link(fd, key, job_id)) == 200
    assert _download(fd, first) == 403 and _download(fd, second) == 403


def test_a_result_naming_a_file_outside_the_store_gets_no_link_to_it(frontdoor_factory):
    """A result message is trusted for what it says ran, not for where files are: a path outside the front door's
    store, or an object outside its bucket and prefix (which it would sign with its own credentials), is not served."""
    fd = frontdoor_factory()
    key = fd.key()
    for n, url in enumerate(("file:///etc/passwd", "s3://someone-elses-bucket/private/key.mp4")):
        job_id = submit(fd, key).json()["id"]
        fd.publish_result({"version": 1, "job_id": job_id, "status": "succeeded", "engine": "lite", "values": {},
                           "outputs": [{"name": "video", "url": url, "sha256": "0" * 64, "size": 1,
                                        "content_type": "video/mp4"}]})
        wait_until(lambda: fd.jobstore.get_job(job_id)["status"] == "succeeded", 30, "the result applied")
        r = requests.get(fd.url + _link(fd, key, job_id), timeout=10, allow_redirects=False)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found"), (n, r.status_code, r.text[:300])
