"""A waiting submitter's result comes on its connection's reply queue (named in the job's reply_to), without a
binding per job; a result meant for an earlier wait is dropped; and a job cannot have its result sent into a queue
of its choosing."""
from __future__ import annotations

from .conftest import HISTORY


def test_results_reach_the_waiting_submitter_and_no_other_queue(bridge):
    bridge.worker()
    client = bridge.client
    victim = f"{bridge.prefix}.victim"  # a queue someone else reads: a job must not be able to write into it
    client.channel.queue_declare(victim, auto_delete=True)
    aimed = bridge.talking_job(seed=1)
    bridge.submit(aimed, reply_to=victim)
    stale = bridge.talking_job(seed=2)  # its submitter gave up waiting: its result must not be taken for the next
    bridge.submit(stale, reply_to=client.reply_queue())
    waited = bridge.talking_job(seed=3)
    result = client.submit(waited, wait=True, timeout=240)
    HISTORY.attempt(bridge.prefix, waited["job_id"], "ok", "succeeded")
    assert result is not None and result["job_id"] == waited["job_id"] and result["status"] == "succeeded"
    results = bridge.wait_results([aimed["job_id"], stale["job_id"], waited["job_id"]], 120)
    assert {r["status"] for r in results.values()} == {"succeeded"}  # every result on the results exchange too
    assert client.channel.queue_declare(victim, passive=True).method.message_count == 0
    assert client.channel.queue_declare(client.reply_queue(), passive=True).method.message_count == 0
