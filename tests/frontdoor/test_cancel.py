"""DELETE /v1/jobs/{id} on a real front door, RabbitMQ and (for the skip) a real worker beside ComfyUI: a queued job
is cancelled (idempotently), its webhook says job.cancelled, every worker hears the cancel on the control exchange,
the worker that takes the job later skips it with a `cancelled` result and goes on with the next job; a finished job
answers 409. And the job page's Cancel button, in headless Chromium."""
from __future__ import annotations

import json
import os

import pytest
import requests

from .conftest import submit, wait_until


def _results(fd, job_id: str) -> list:
    """Result messages for `job_id` in <p>.results (the workers route every result there too), taken off it."""
    conn, ch = fd.channel()
    out = []
    try:
        while True:
            method, _props, body = ch.basic_get(f"{fd.prefix}.results", auto_ack=True)
            if method is None:
                return out
            doc = json.loads(body)
            if doc.get("job_id") == job_id:
                out.append(doc)
    finally:
        conn.close()


def test_cancel_a_queued_job_then_a_worker_skips_it(frontdoor_factory, comfy_server, receiver):
    fd = frontdoor_factory(webhook_allow=[f"127.0.0.1:{receiver.port}"])
    rec, other = fd.key_record(), fd.key()
    key, receiver.secret = rec["api_key"], rec["webhook_secret"]
    headers = {"X-API-Key": key}
    job = submit(fd, key, data={"engine": "lite", "min_resolution": "256", "webhook_url": receiver.url}).json()
    conn, ch = fd.channel()  # a listener on the control exchange, as each worker consumer has
    control = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(control, f"{fd.prefix}.control")
    try:
        url = f"{fd.url}/v1/jobs/{job['id']}"
        assert requests.delete(url, headers={"X-API-Key": other}, timeout=10).status_code == 404
        first = requests.delete(url, headers=headers, timeout=30)
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "cancelled"
        again = requests.delete(url, headers=headers, timeout=30)
        # idempotent: the same answer (but the webhook's delivery, which may have happened in between)
        assert again.status_code == 200
        assert {**again.json(), "webhook": None} == {**first.json(), "webhook": None}
        _method, _props, body = ch.basic_get(control, auto_ack=True)
        assert json.loads(body) == {"type": "cancel", "job_id": job["id"]}
        assert ch.basic_get(control, auto_ack=True)[0] is None  # the second cancel broadcast nothing
    finally:
        conn.close()
    assert requests.get(url, headers=headers, timeout=10).json()["status"] == "cancelled"
    assert (fd.store / "cancelled" / f"{job['id']}.json").is_file()
    events = requests.get(url + "/events", headers=headers, timeout=30).text  # a finished job: one event, then end
    assert json.loads(events.split("data: ", 1)[1].split("\n", 1)[0])["status"] == "cancelled"
    wait_until(lambda: receiver.accepted, 30, "the job.cancelled webhook")
    assert receiver.accepted[0]["type"] == "job.cancelled" and receiver.accepted[0]["data"]["status"] == "cancelled"
    assert fd.queued() == 1  # the message is still in the queue: nobody took it yet

    fd.worker(comfy_server.url)
    wait_until(lambda: fd.queued() == 0, 120, "the worker took the cancelled job")
    result = wait_until(lambda: _results(fd, job["id"]), 60, "the cancelled job's result")[0]
    assert result["status"] == "cancelled" and "outputs" not in result

    # the next job runs, and a finished job cannot be cancelled
    nxt = submit(fd, key).json()
    nxt_url = f"{fd.url}/v1/jobs/{nxt['id']}"
    wait_until(lambda: requests.get(nxt_url, headers=headers, timeout=10).json()["status"] == "succeeded", 300,
               "the next job rendered")
    # By now the front door has applied the cancelled job's result too (one consumer, in order): no second webhook.
    hook = requests.get(url, headers=headers, timeout=10).json()["webhook"]
    assert (hook["state"], hook["attempts"]) == ("delivered", 1)
    assert [p["type"] for p in receiver.accepted] == ["job.cancelled"]
    late = requests.delete(nxt_url, headers=headers, timeout=30)
    assert late.status_code == 409 and late.json()["error"]["code"] == "already_finished"
    assert requests.get(nxt_url, headers=headers, timeout=10).json()["status"] == "succeeded"


@pytest.mark.slow
def test_the_job_page_cancels_a_queued_job(frontdoor_factory, tmp_path):
    from .browser import chromium, screenshot_dir

    fd = frontdoor_factory()
    key = fd.key()
    job = submit(fd, key).json()
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 900, "height": 700})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(fd.url + "/")
        page.evaluate("k => localStorage.setItem('sonicflow.apiKey', k)", key)
        page.goto(f"{fd.url}/jobs/{job['id']}")
        page.wait_for_selector("#cancel", state="visible")
        assert page.text_content("#status") == "Queued: waiting for a worker…"
        shots = screenshot_dir(tmp_path)
        page.screenshot(path=os.path.join(shots, "frontdoor-job-queued.png"), full_page=True)
        page.click("#cancel")
        page.wait_for_function("() => document.getElementById('status').textContent.startsWith('Cancelled')")
        assert page.is_hidden("#cancel") and page.text_content("#error") == ""
        page.screenshot(path=os.path.join(shots, "frontdoor-job-cancelled.png"), full_page=True)
    assert errors == []
    got = requests.get(f"{fd.url}/v1/jobs/{job['id']}", headers={"X-API-Key": key}, timeout=10).json()
    assert got["status"] == "cancelled"
