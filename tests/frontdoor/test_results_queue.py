"""`<p>.results` is bounded (issue #10 M7): every result is routed there for AMQP consumers, and in a front-door
deployment nobody reads it, so unbounded it grew until the broker's memory alarm blocked every publisher. It keeps
the newest `results_max`; the front door's own queue still gets every result. A queue an older version declared
without the bound is used as it is (RabbitMQ refuses a declaration with other arguments), with a warning."""
from __future__ import annotations

import pika

from queue_bridge.topology import Topology

from .conftest import AMQP, FrontDoor, submit, wait_until


def _depth(fd, queue: str) -> int:
    conn, ch = fd.channel()
    try:
        return ch.queue_declare(queue, passive=True).method.message_count
    finally:
        conn.close()


def test_results_queue_keeps_only_the_newest(frontdoor_factory):
    fd = frontdoor_factory(env={"SONICFLOW_RESULTS_MAX": "3"})
    key = fd.key()
    ids = [submit(fd, key, data={"engine": "lite", "seed": str(i)}).json()["id"] for i in range(6)]
    for job_id in ids:
        fd.publish_result({"version": 1, "job_id": job_id, "status": "succeeded", "outputs": [], "values": {}})
    status = {}

    def all_done():
        for job_id in ids:
            status[job_id] = fd.jobstore.get_job(job_id)["status"]
        return set(status.values()) == {"succeeded"}

    wait_until(all_done, 30, "the front door applying every result")
    assert _depth(fd, f"{fd.prefix}.results") == 3  # nobody reads it: the newest three, not all six
    assert _depth(fd, f"{fd.prefix}.api.results") == 0


def test_an_unbounded_results_queue_from_an_older_version_is_used_with_a_warning(rabbit, tmp_path):
    fd = FrontDoor(tmp_path, "sqlite")
    conn = pika.BlockingConnection(pika.URLParameters(AMQP))
    conn.channel().queue_declare(f"{fd.prefix}.results", durable=True, arguments={"x-queue-type": "quorum"})
    conn.close()
    try:
        fd.start()  # declares the rest of the topology; would die on PRECONDITION_FAILED without the fallback
        key = fd.key()
        assert submit(fd, key).status_code == 202
        assert "results_queue_unbounded" in fd.log_tail(200)
        assert fd.queued() == 1
    finally:
        fd.stop()


def test_a_fresh_results_queue_is_declared_bounded(rabbit):
    conn = pika.BlockingConnection(pika.URLParameters(AMQP))
    t = Topology(prefix=f"sfbound{id(conn)}", results_max=7)
    try:
        t.declare(conn.channel())
        ch = conn.channel()
        # the bound it was given is accepted again (a queue without it, or with another, would be refused: 406) ...
        ch.queue_declare(t.results_queue, durable=True, arguments={**t.results_queue_args(), "x-max-length": 7})
        # ... and any other bound is refused
        try:
            ch.queue_declare(t.results_queue, durable=True, arguments={**t.results_queue_args(), "x-max-length": 8})
            raise AssertionError("RabbitMQ accepted another x-max-length: the queue has none")
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 406
    finally:
        t.delete(conn.channel())
        conn.close()
