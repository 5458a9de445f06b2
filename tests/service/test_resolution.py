"""The warm path's caches (app/resolution.py): keys expire after their TTL, running jobs'
checkpoints are re-resolved after the refresh time, finished jobs' are kept, 0 turns them off."""

from __future__ import annotations

import time

from app.resolution import KeyCache, ResolutionCache


def test_an_accepted_key_is_trusted_only_for_its_ttl() -> None:
    keys = KeyCache(ttl_s=0.05)
    keys.remember("digest", "acme")
    assert keys.get("digest") == "acme"
    time.sleep(0.06)
    assert keys.get("digest") is None  # read from the database again: a revocation shows


def test_a_zero_ttl_caches_nothing() -> None:
    keys = KeyCache(ttl_s=0.0)
    keys.remember("digest", "acme")
    assert keys.get("digest") is None
    models = ResolutionCache(refresh_s=0.0)
    models.remember("acme", "job_1", "succeeded", "model")
    assert models.get(("acme", "job_1")) is None


def test_running_jobs_are_resolved_again_and_finished_ones_are_kept() -> None:
    models = ResolutionCache(refresh_s=0.05)
    models.remember("acme", "job_running", "running", "newest-so-far")
    models.remember("acme", "job_done", "succeeded", "final")
    time.sleep(0.06)
    assert models.get(("acme", "job_running")) is None
    assert models.get(("acme", "job_done")) == "final"
    assert models.get(("other-tenant", "job_done")) is None  # keyed by tenant too


def test_the_caches_are_bounded() -> None:
    keys = KeyCache(ttl_s=60.0, capacity=2)
    for index in range(3):
        keys.remember(f"digest-{index}", "acme")
    assert keys.get("digest-0") is None and keys.get("digest-2") == "acme"
