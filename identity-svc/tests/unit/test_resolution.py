"""Identity resolution rules, without I/O: merges, limits, priorities, shared devices, and the
order-independence property."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from identity.domain.resolution import Merge, resolve
from identity.domain.settings import DEFAULT_SETTINGS, IdentifierRule, TenantSettings


def ids():
    counter = itertools.count(1)
    return lambda: f"new{next(counter)}"


def run(batch, known=None, counts=None, created=None, rules=DEFAULT_SETTINGS):
    return resolve(batch, settings=rules, known=known or {}, counts=counts or {}, created=created or {},
                   new_id=ids())


def test_unknown_identifiers_make_one_new_profile_holding_all_of_them():
    plan = run([[("user_id", "u1"), ("anonymous_id", "a1")]])
    assert plan.new_profiles == ["new1"]
    assert plan.event_profiles == ["new1"]
    assert sorted(plan.new_identifiers) == [("anonymous_id", "a1", "new1"), ("user_id", "u1", "new1")]


def test_anonymous_history_merges_into_the_known_person_on_sign_up():
    known = {("anonymous_id", "a1"): "anon", ("user_id", "u1"): "known"}
    plan = run([[("user_id", "u1"), ("anonymous_id", "a1")]], known=known,
               counts={"known": {"user_id": 1}, "anon": {"anonymous_id": 1}}, created={"anon": 0, "known": 1})
    assert plan.merges == [Merge("anon", "known")]
    assert plan.event_profiles == ["known"]


def test_first_identify_on_an_anonymous_profile_attaches_the_user_id_without_a_new_profile():
    plan = run([[("user_id", "u1"), ("anonymous_id", "a1")]], known={("anonymous_id", "a1"): "anon"},
               counts={"anon": {"anonymous_id": 1}}, created={"anon": 0})
    assert plan.new_profiles == []
    assert plan.new_identifiers == [("user_id", "u1", "anon")]


def test_two_identified_people_are_never_merged_silently():
    # u1's profile and e2's profile are both identified: the event goes to the higher-priority user_id
    known = {("user_id", "u1"): "p1", ("email", "b@x.com"): "p2"}
    plan = run([[("user_id", "u1"), ("email", "b@x.com")]], known=known,
               counts={"p1": {"user_id": 1}, "p2": {"email": 1}}, created={"p1": 0, "p2": 1})
    assert plan.merges == []
    assert plan.event_profiles == ["p1"]
    assert plan.dropped == [[("email", "b@x.com")]]


def test_a_shared_device_does_not_glue_two_people_together():
    plan = run([
        [("user_id", "alice"), ("anonymous_id", "kiosk")],
        [("user_id", "bob"), ("anonymous_id", "kiosk")],
    ])
    alice, bob = plan.event_profiles
    assert alice != bob
    assert plan.merges == []
    assert ("anonymous_id", "kiosk", alice) in plan.new_identifiers  # the device keeps its first owner
    assert plan.dropped[1] == [("anonymous_id", "kiosk")]


def test_a_new_email_beyond_the_limit_is_dropped_not_attached_and_no_new_profile_is_made():
    # default limit: 1 email per profile
    known = {("user_id", "u1"): "p1"}
    plan = run([[("user_id", "u1"), ("email", "second@x.com")]], known=known,
               counts={"p1": {"user_id": 1, "email": 1}}, created={"p1": 0})
    assert plan.event_profiles == ["p1"]
    assert plan.new_identifiers == []
    assert plan.dropped == [[("email", "second@x.com")]]


def test_a_merge_that_would_break_a_limit_drops_the_lowest_priority_identifier_instead():
    rules = TenantSettings.model_validate({"identifiers": {"device_id": {"priority": 20, "limit": 2, "strong": False}}})
    # an anonymous profile already holding two devices meets a known person holding one
    known = {("user_id", "u1"): "p1", ("device_id", "d9"): "anon"}
    counts = {"p1": {"user_id": 1, "device_id": 1}, "anon": {"device_id": 2}}
    plan = run([[("user_id", "u1"), ("device_id", "d9")]], known=known, counts=counts,
               created={"p1": 0, "anon": 1}, rules=rules)
    assert plan.merges == []  # 1 + 2 devices > limit 2: the device is dropped, nothing merges
    assert plan.event_profiles == ["p1"]
    assert plan.dropped == [[("device_id", "d9")]]


def test_within_the_limit_the_same_merge_goes_ahead():
    rules = TenantSettings.model_validate({"identifiers": {"device_id": {"priority": 20, "limit": 5, "strong": False}}})
    known = {("user_id", "u1"): "p1", ("device_id", "d9"): "anon"}
    counts = {"p1": {"user_id": 1, "device_id": 1}, "anon": {"device_id": 2}}
    plan = run([[("user_id", "u1"), ("device_id", "d9")]], known=known, counts=counts,
               created={"p1": 0, "anon": 1}, rules=rules)
    assert plan.merges == [Merge("anon", "p1")]


def test_greedy_priority_keeps_the_identifiers_that_fit_after_dropping_one_that_does_not():
    # the email breaks the limit, the new anonymous id still joins the person
    known = {("user_id", "u1"): "p1"}
    plan = run([[("user_id", "u1"), ("email", "new@x.com"), ("anonymous_id", "a7")]], known=known,
               counts={"p1": {"user_id": 1, "email": 1}}, created={"p1": 0})
    assert plan.new_identifiers == [("anonymous_id", "a7", "p1")]
    assert plan.dropped == [[("email", "new@x.com")]]


def test_an_anonymous_chain_merges_into_the_oldest_profile_when_nobody_is_identified():
    known = {("anonymous_id", "a1"): "old", ("anonymous_id", "a2"): "young"}
    plan = run([[("anonymous_id", "a1"), ("anonymous_id", "a2")]], known=known,
               counts={"old": {"anonymous_id": 1}, "young": {"anonymous_id": 1}}, created={"old": 0, "young": 1})
    assert plan.merges == [Merge("young", "old")]


def test_merge_chains_within_a_batch_point_at_the_survivor():
    plan = run([
        [("anonymous_id", "a1")],
        [("anonymous_id", "a2")],
        [("anonymous_id", "a1"), ("anonymous_id", "a2")],
        [("user_id", "u1"), ("anonymous_id", "a2")],
    ])
    assert len(set(plan.event_profiles)) == 1
    survivor = plan.event_profiles[0]
    assert all(m.into_profile == survivor for m in plan.merges)


def test_custom_identifier_types_follow_their_rules():
    rules = TenantSettings.model_validate({"identifiers": {"loyalty_card": {"priority": 9, "limit": 1}}})
    plan = run([[("user_id", "u1"), ("loyalty_card", "L1")], [("user_id", "u2"), ("loyalty_card", "L1")]],
               rules=rules)
    assert plan.event_profiles[0] != plan.event_profiles[1]  # the card is strong: two people, no merge
    assert plan.merges == []


# --- order independence -----------------------------------------------------------------------

def _events_of(person: int, anon_ids: list[str]) -> list[list[tuple[str, str]]]:
    """A person's calls: identify (user id + email + a device), alias of each other device, and
    anonymous views. Every call naming the person carries the user id, as SDKs send it."""
    uid, email = ("user_id", f"u{person}"), ("email", f"p{person}@example.com")
    out = [[uid, email, ("anonymous_id", anon_ids[0])]]
    out += [[uid, ("anonymous_id", a)] for a in anon_ids[1:]]
    out += [[("anonymous_id", a)] for a in anon_ids]
    return out


def _graph(plan, events):
    """The final identity graph: profile -> set of identifiers (profile ids are opaque)."""
    owner = {(t, v): p for t, v, p in plan.new_identifiers}
    groups: dict[str, set] = {}
    for keys in events:
        for k in keys:
            groups.setdefault(owner[k], set()).add(k)
    return {frozenset(g) for g in groups.values()}


people = st.lists(st.lists(st.sampled_from([f"a{i}" for i in range(12)]), min_size=1, max_size=4, unique=True),
                  min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(devices=people, data=st.data())
def test_any_order_of_the_same_identify_and_alias_events_yields_the_same_identity_graph(devices, data):
    """Devices no two people share end up with their person in every order; each person is exactly
    one profile holding their user id and email; no two people ever share a profile. (A device two
    people share stays with whoever used it first: that part is order-dependent by design.)"""
    events = [e for person, anon in enumerate(devices) for e in _events_of(person, anon)]
    order = data.draw(st.permutations(events))
    baseline = run(events)
    shuffled = run(order)
    shared = {a for a in {a for d in devices for a in d}
              if sum(a in d for d in devices) > 1}

    def unshared(graph):
        return {frozenset(k for k in g if not (k[0] == "anonymous_id" and k[1] in shared)) for g in graph}

    assert unshared(_graph(baseline, events)) == unshared(_graph(shuffled, events))
    truth = {frozenset([("user_id", f"u{p}"), ("email", f"p{p}@example.com")]
                       + [("anonymous_id", a) for a in d if a not in shared]) for p, d in enumerate(devices)}
    assert unshared(_graph(shuffled, events)) - {frozenset()} == truth


def test_rule_defaults_are_sane():
    assert DEFAULT_SETTINGS.rule("user_id") == IdentifierRule(priority=1, limit=1, normalise="trim")
    assert not DEFAULT_SETTINGS.rule("anonymous_id").strong
