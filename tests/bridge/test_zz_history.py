"""T8: the Jepsen-style check over every job this session's bridge tests submitted (it runs last: file order).
It also runs a small mixed workload of its own (good, repeated, malformed, duplicate-submitted jobs), so it checks
something when run alone."""
from __future__ import annotations

from queue_bridge.protocol import make_job

from .history import HISTORY


def test_t8_history_lost_unexpected_duplicated(bridge):
    bridge.worker()
    good = [bridge.talking_job(f"t8-{i}", seed=300 + i) for i in range(3)]
    for job in good + good[:2]:  # two published twice: the same job id is one effect, one result
        bridge.submit(job)
    bad = make_job("t8-bad", "talking_head", {"image": "../outside.png", "audio": "speech.wav"})
    bridge.submit(bad, expect="dead")
    bridge.wait_results([j["job_id"] for j in good] + ["t8-bad"], 240)
    from .conftest import wait_until

    wait_until(lambda: sum(r["job_id"] in ("t8-0", "t8-1") for r in bridge.drain_results()) == 4, 60,
               "a result for each publish of the twice-published jobs")
    bridge.dead()
    bridge.effects()

    mine = HISTORY.check(bridge.prefix)
    assert mine["confirmed"] == 4 and mine["completed"] == 4, mine  # 4 distinct job ids
    assert bridge.effects()["t8-0"] == 1
    report = HISTORY.check()
    print(f"T8 session history: {report}")
    assert report["lost"] == [], "confirmed jobs with no result and no dead letter"
    assert report["unexpected"] == [], "results for jobs nobody submitted"
    assert report["duplicated_effects"] == [], "a job committed more than once"
    assert report["inconsistent_results"] == [], "two different successful results for one job id"
    assert report["succeeded_and_failed"] == [] and report["wrong_outcome"] == []
