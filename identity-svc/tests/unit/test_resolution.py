"""Identity resolution rules, without I/O."""

from __future__ import annotations

import itertools

from identity.domain.resolution import Merge, resolve


def ids():
    counter = itertools.count(1)
    return lambda: f"new{next(counter)}"


def run(batch, known=None, strong=None, created=None):
    return resolve(batch, known=known or {}, strong=strong or {}, created=created or {}, new_id=ids())


def test_unknown_identifiers_make_one_new_profile_holding_all_of_them():
    plan = run([[("user_id", "u1"), ("anonymous_id", "a1")]])
    assert plan.new_profiles == ["new1"]
    assert plan.event_profiles == ["new1"]
    assert sorted(plan.new_identifiers) == [("anonymous_id", "a1", "new1"), ("user_id", "u1", "new1")]


def test_anonymous_history_merges_into_the_known_person_on_sign_up():
    known = {("anonymous_id", "a1"): "anon", ("user_id", "u1"): "known"}
    plan = run([[("user_id", "u1"), ("anonymous_id", "a1")]], known=known,
               strong={"known": {"user_id": {"u1"}}}, created={"anon": 0, "known": 1})
    assert plan.merges == [Merge("anon", "known")]
    assert plan.event_profiles == ["known"]


def test_first_identify_on_an_anonymous_profile_attaches_the_user_id_without_a_new_profile():
    plan = run([[("user_id", "u1"), ("anonymous_id", "a1")]], known={("anonymous_id", "a1"): "anon"},
               created={"anon": 0})
    assert plan.new_profiles == []
    assert plan.new_identifiers == [("user_id", "u1", "anon")]


def test_two_identified_profiles_are_never_merged_silently():
    known = {("user_id", "u1"): "p1", ("anonymous_id", "a2"): "p2"}
    strong = {"p1": {"user_id": {"u1"}}, "p2": {"user_id": {"u2"}}}
    plan = run([[("user_id", "u1"), ("anonymous_id", "a2")]], known=known, strong=strong,
               created={"p1": 0, "p2": 1})
    assert plan.merges == []
    assert plan.event_profiles == ["p1"]
    assert plan.new_identifiers == []


def test_a_second_person_on_a_shared_device_gets_a_profile_of_their_own():
    known = {("anonymous_id", "family-ipad"): "mum"}
    plan = run([[("user_id", "dad"), ("anonymous_id", "family-ipad")]], known=known,
               strong={"mum": {"user_id": {"mum"}}}, created={"mum": 0})
    assert plan.merges == []
    assert plan.event_profiles == ["new1"]
    assert plan.new_identifiers == [("user_id", "dad", "new1")]  # the device stays with mum


def test_a_batch_resolves_in_order_and_chained_merges_point_at_the_survivor():
    plan = run([
        [("anonymous_id", "a1")],
        [("anonymous_id", "a2")],
        [("user_id", "u1"), ("anonymous_id", "a1")],
        [("user_id", "u1"), ("anonymous_id", "a2")],
    ])
    assert plan.new_profiles == ["new1", "new2"]
    assert plan.merges == [Merge("new2", "new1")]
    assert plan.event_profiles == ["new1"] * 4
