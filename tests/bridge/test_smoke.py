"""The bridge end to end on the talking-head template: a job in, one result out, the same result from the cache."""
from __future__ import annotations

import hashlib
import json
import os

from .conftest import wait_until


def test_talking_head_job_end_to_end_and_cache(bridge):
    bridge.worker()
    job = bridge.talking_job(seed=3)
    bridge.submit(job)
    result = bridge.wait_results([job["job_id"]], 240)[job["job_id"]]
    assert result["status"] == "succeeded", result
    assert not result["cache_hit"] and result["engine"] == "lite"
    video = result["outputs"][0]
    assert video["name"] == "video" and video["url"].startswith("file://")
    data = open(video["url"][len("file://"):], "rb").read()
    assert hashlib.sha256(data).hexdigest() == video["sha256"] and len(data) == video["size"]
    assert {"fetch_inputs", "upload", "execute", "collect", "total"} <= set(result["timings"])

    # Same inputs and parameters under a new job id: answered from the result cache, same output.
    again = bridge.talking_job(seed=3)
    bridge.submit(again)
    second = bridge.wait_results([again["job_id"]], 120)[again["job_id"]]
    assert second["cache_hit"] and second["outputs"] == result["outputs"]
    # The same job id again: the ledger's result, byte for byte.
    bridge.submit(job)
    wait_until(lambda: len([r for r in bridge.drain_results() if r["job_id"] == job["job_id"]]) == 2, 60, "replay")
    first, dup = [r for r in bridge.results if r["job_id"] == job["job_id"]]
    assert json.dumps(first, sort_keys=True) == json.dumps(dup, sort_keys=True)
    assert bridge.effects() == {job["job_id"]: 1, again["job_id"]: 1}
    assert os.path.isfile(bridge.store / "ledger" / f"{job['job_id']}.json")
