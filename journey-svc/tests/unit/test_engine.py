"""The engine's pure decisions: stable random splits and A/B tests that hand the winner its share."""

from __future__ import annotations

from collections import Counter

from journey.domain.engine import draw, pick

VARIANTS = [{"percent": 50, "next": "a"}, {"percent": 50, "next": "b"}]


def test_a_split_is_stable_per_enrollment_and_follows_the_percentages():
    assert draw("e-1", "split") == draw("e-1", "split")
    counts = Counter(pick(VARIANTS, draw(f"e-{i}", "split"))["next"] for i in range(10_000))
    assert 4_700 < counts["a"] < 5_300


def test_a_decided_ab_test_sends_the_winner_its_share():
    counts = Counter(pick(VARIANTS, draw(f"e-{i}", "ab"), winner="B", winner_share=90)["next"]
                     for i in range(10_000))
    assert 8_800 < counts["b"] < 9_200 and counts["a"] + counts["b"] == 10_000
    three = [{"percent": 20, "next": "a"}, {"percent": 30, "next": "b"}, {"percent": 50, "next": "c", "label": "C"}]
    counts = Counter(pick(three, draw(f"e-{i}", "ab"), winner="C", winner_share=80)["next"] for i in range(10_000))
    assert 7_800 < counts["c"] < 8_200 and 600 < counts["a"] < 1_000 and 1_000 < counts["b"] < 1_400
    assert pick(VARIANTS, 99.9, winner="nobody")["next"] == "b"  # an unknown winner changes nothing


def test_a_best_send_time_wait_waits_for_the_persons_best_hour_but_never_past_its_cap():
    from datetime import UTC, datetime, timedelta

    from journey.domain.engine import _wait_until

    now = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    step = {"type": "wait", "best_send_time": True, "within": "P1D", "next": "x"}
    assert _wait_until(step, now, {"best_send_at": now + timedelta(hours=5)}) == now + timedelta(hours=5)
    assert _wait_until(step, now, {"best_send_at": now + timedelta(days=3)}) == now + timedelta(days=1)
    assert _wait_until(step, now, {}) == now  # nothing known (messaging unreachable or no data): send now
