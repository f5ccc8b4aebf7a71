"""JobRunner's decisions, in milliseconds: an in-process stand-in for ComfyUI (the executor), the real template
library, the real file store and real path inputs. The real-service tests (tests/bridge) stay the proof; these pin
the policy: ledger replays, cache hits, retry vs dead-letter vs requeue, poison headers, broker dead letters."""
from __future__ import annotations

import json
import os

import pytest

from queue_bridge.comfy_run import Interrupted
from queue_bridge.policy import Action
from queue_bridge.protocol import JobError, make_job
from queue_bridge.runner import JobRunner
from queue_bridge.settings import Settings
from queue_bridge.template import TemplateLibrary
from sonicflow_contract import ATTEMPT_HEADER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FakeComfy:
    """What JobRunner asks of ComfyUI: node definitions, a version, and running a filled template."""

    def __init__(self, failures=()):
        self.failures = list(failures)  # raised by the next runs, in order
        self.runs = 0

    def object_info(self, classes):
        return {}

    def engine_version(self):
        return "sonicflow=test;comfyui=test;"

    def run(self, job, t, fetched, info, attempt, delivery, timings, store):
        self.runs += 1
        if self.failures:
            raise self.failures.pop(0)
        put = store.put_content(b"video bytes of " + job.job_id.encode(), ".mp4", "video/mp4")
        return [{"name": "video", **put}], {}, "lite"


@pytest.fixture
def runner_for(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("portrait.png", "speech.wav"):
        with open(os.path.join(ROOT, "sample_media", name), "rb") as f:
            (inputs / name).write_bytes(f.read())
    settings = Settings(store_url=str(tmp_path / "store"), input_root=str(inputs), max_attempts=3,
                        worker_id="test-worker")

    def make(fake):
        return JobRunner(settings, fake, TemplateLibrary(os.path.join(ROOT, "templates")))

    return make


def job(job_id="j1", **params) -> bytes:
    return json.dumps(make_job(job_id, "talking_head", {"image": "portrait.png", "audio": "speech.wav"},
                               {"engine": "lite", **params})).encode()


def test_success_then_the_ledger_answers_a_redelivery(runner_for):
    fake = FakeComfy()
    runner = runner_for(fake)
    first = runner.process(job(), {})
    assert first.action is Action.ACK and first.label == "succeeded" and fake.runs == 1
    again = runner.process(job(), {"x-delivery-count": 1})
    assert again.action is Action.ACK and again.label == "duplicate" and again.result == first.result
    assert fake.runs == 1  # not run twice


def test_same_inputs_and_parameters_hit_the_cache(runner_for):
    fake = FakeComfy()
    runner = runner_for(fake)
    runner.process(job("a", seed=3), {})
    hit = runner.process(job("b", seed=3), {})
    assert hit.label == "cached" and json.loads(hit.result)["cache_hit"] is True and fake.runs == 1
    assert runner.process(job("c", seed=4), {}).label == "succeeded" and fake.runs == 2


@pytest.mark.parametrize("error, attempt, action, label", [
    (JobError("input_unavailable", "flaky"), 1, Action.RETRY, "retried"),
    (JobError("input_unavailable", "flaky"), 3, Action.DEAD, "dead_lettered"),  # attempts used up
    (JobError("media_rejected", "no face"), 1, Action.DEAD, "dead_lettered"),  # permanent
    (JobError("comfy_crashed", "went away"), 1, Action.REQUEUE, "requeued"),  # counts toward the delivery limit
])
def test_failures_follow_one_policy(runner_for, error, attempt, action, label):
    outcome = runner_for(FakeComfy([error])).process(job(), {ATTEMPT_HEADER: attempt})
    assert (outcome.action, outcome.label, outcome.error.code) == (action, label, error.code)
    if action is Action.DEAD:
        result = json.loads(outcome.result)
        assert result["status"] == "failed" and result["error"]["code"] == error.code and result["job_id"] == "j1"


def test_stopping_gives_the_job_back(runner_for):
    assert runner_for(FakeComfy([Interrupted()])).process(job(), {}).action is Action.GIVE_BACK


@pytest.mark.parametrize("headers", [{ATTEMPT_HEADER: "two"}, {ATTEMPT_HEADER: b"\xff"}, {ATTEMPT_HEADER: None},
                                     {"x-delivery-count": "many"}, {ATTEMPT_HEADER: 10 ** 12}])
def test_a_poison_header_does_not_stop_the_job(runner_for, headers):
    outcome = runner_for(FakeComfy()).process(job(), headers)
    assert outcome.action is Action.ACK and outcome.attempt == 1


@pytest.mark.parametrize("body, code", [(b"{not json", "bad_json"), (b"[1, 2]", "bad_json"),
                                        (b"[" * 100000 + b"]" * 100000, "bad_json"),
                                        (json.dumps({"version": 1, "job_id": "x"}).encode(), "schema_violation")])
def test_malformed_bodies_are_dead_lettered_with_their_code(runner_for, body, code):
    outcome = runner_for(FakeComfy()).process(body, {})
    assert outcome.action is Action.DEAD and outcome.error.code == code


def test_a_job_the_broker_dead_lettered_gets_one_failure_result(runner_for):
    runner = runner_for(FakeComfy())
    headers = {"x-death": [{"queue": "sonicflow.jobs", "reason": "delivery_limit"}]}
    first = runner.dead_letter_result(job("poison"), headers, "sonicflow.jobs")
    assert first.label == "dead_lettered" and json.loads(first.result)["error"]["code"] == "delivery_limit"
    second = runner.dead_letter_result(job("poison"), headers, "sonicflow.jobs")
    assert second.label == "duplicate" and second.result == first.result
    assert runner.dead_letter_result(job("poison"), {"x-death": "garbage"}, "sonicflow.jobs") is None
