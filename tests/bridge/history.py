"""A Jepsen-style history of every job the bridge tests submit (after rabbitmq/jepsen's queue checker):
attempts (ok = confirmed by the broker, fail = refused, unknown = no answer), completions (result messages, duplicates
included), dead letters, and committed effects (the ledger writes the workers logged). A confirmed job without a result
message is lost, even if it sits in the dead-letter queue: the submitter would wait for it forever."""
from __future__ import annotations

import json
import threading


class History:
    def __init__(self):
        self.lock = threading.Lock()
        self.attempts: dict = {}  # (prefix, job_id) -> (status, expected outcome)
        self.results: dict = {}  # (prefix, job_id) -> [result bodies]
        self.dead_letters: dict = {}  # (prefix, job_id) -> {body: dlq record}
        self.effect_counts: dict = {}  # (prefix, job_id) -> committed events
        self.replayed: set = set()  # (prefix, job_id) taken out of the DLQ and run again on purpose

    def attempt(self, prefix, job_id, status, expect):
        with self.lock:
            self.attempts[(prefix, job_id)] = (status, expect)

    def completed(self, prefix, result: dict):
        with self.lock:
            self.results.setdefault((prefix, result.get("job_id")), []).append(result)

    def dead(self, prefix, record: dict):
        with self.lock:
            self.dead_letters.setdefault((prefix, record.get("job_id")), {})[record.get("body")] = record

    def replay(self, prefix, job_id):
        with self.lock:
            self.replayed.add((prefix, job_id))

    def effects(self, prefix, counts: dict):
        with self.lock:
            for job_id, n in counts.items():
                self.effect_counts[(prefix, job_id)] = n

    def check(self, prefix: str | None = None) -> dict:
        """lost, unexpected and duplicated sets over the jobs of `prefix` (all when None)."""
        def mine(key):
            return prefix is None or key[0] == prefix

        with self.lock:
            confirmed = {k for k, (status, _) in self.attempts.items() if status == "ok" and mine(k)}
            attempted = {k for k in self.attempts if mine(k)}
            succeeded = {k for k, rs in self.results.items() if mine(k) and any(r["status"] == "succeeded" for r in rs)}
            failed = {k for k, rs in self.results.items() if mine(k) and any(r["status"] == "failed" for r in rs)}
            cancelled = {k for k, rs in self.results.items() if mine(k) and any(r["status"] == "cancelled" for r in rs)}
            dead = {k for k in self.dead_letters if mine(k)}
            answered = succeeded | failed | cancelled  # every job gets a result message, dead-lettered ones included
            completed = answered | dead
            # A job may have several result messages (at-least-once delivery), but they must be the same result.
            inconsistent = {k for k, rs in self.results.items() if mine(k) and
                            len({json.dumps(r, sort_keys=True) for r in rs if r["status"] == "succeeded"}) > 1}
            duplicated_effects = {k for k, n in self.effect_counts.items() if mine(k) and n > 1}
            both = ((succeeded & (failed | dead)) | (cancelled & (succeeded | failed))) - self.replayed
            wrong = {k for k, (status, expect) in self.attempts.items() if mine(k) and status == "ok" and
                     ((expect == "succeeded" and k not in succeeded) or
                      (expect == "cancelled" and k not in cancelled) or
                      (expect == "dead" and not (k in dead and k in failed)))}
            return {"attempted": len(attempted), "confirmed": len(confirmed), "completed": len(answered & attempted),
                    "lost": sorted(confirmed - answered), "unexpected": sorted(completed - attempted),
                    "duplicated_effects": sorted(duplicated_effects), "inconsistent_results": sorted(inconsistent),
                    "succeeded_and_failed": sorted(both), "wrong_outcome": sorted(wrong)}


HISTORY = History()
