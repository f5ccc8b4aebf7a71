"""The rate limit holds across front-door processes: two real front doors on one job store (PostgreSQL, and SQLite
on one machine) together allow a key its burst, not twice it."""
from __future__ import annotations

import pytest
import requests


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_two_front_doors_together_allow_the_configured_rate(db, request, frontdoor_factory):
    pg = request.getfixturevalue("postgres") if db == "postgres" else None
    first = frontdoor_factory(db, pg)
    second = frontdoor_factory(db, pg, share=first)
    # a burst of 6, then one token per 100 minutes: the test ends long before another token comes
    key = first.key(rate=0.01, burst=6, quota=1000)
    answers = []
    for i in range(16):
        fd = (first, second)[i % 2]
        # an empty JSON body: refused (400) after the rate limit, so nothing is fetched, stored or queued
        r = requests.post(fd.url + "/v1/jobs", json={}, headers={"X-API-Key": key}, timeout=30)
        answers.append((fd is first, r.status_code, r.headers.get("Retry-After")))
    passed = [a for a in answers if a[1] != 429]
    assert len(passed) == 6 and {a[1] for a in passed} == {400}, answers
    assert {a[0] for a in passed} == {True, False}  # both processes let some through: one shared bucket
    refused = [a for a in answers if a[1] == 429]
    assert len(refused) == 10 and all(int(a[2]) > 60 for a in refused)  # the next token is minutes away
