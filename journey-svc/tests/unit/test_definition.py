"""Journey definitions: what validates (the documented example, every step type), every error code with
its step and JSON pointer, all errors collected at once, loops with and without a wait, warnings,
durations, and condition evaluation."""

from __future__ import annotations

import copy
import datetime as dt
from datetime import timedelta

import orjson
import pytest

from journey.domain.definition import (
    ABTestStep,
    AllOf,
    AnyOf,
    Compare,
    ConditionStep,
    Entry,
    ExitCriterion,
    ExitStep,
    Goal,
    InSegment,
    Issue,
    JumpStep,
    Not,
    Opened,
    RandomSplitStep,
    Reentry,
    SendStep,
    WaitForEventStep,
    WaitStep,
    evaluate_condition,
    matches,
    parse_duration,
    validate,
)

SEGMENT = "0190f5d2-7c1e-7a3b-9f00-000000000001"
DOC_EXAMPLE = {
    "entry": {"type": "event", "event": "Product Added", "where": [{"property": "price", "op": "gte", "value": 50}],
              "key": "cart_id"},
    "reentry": {"mode": "after_exit"},
    "holdout_percent": 10,
    "goal": {"event": "Order Completed", "within": "P7D", "exit": True},
    "exit_criteria": [{"event": "message.unsubscribed"}, {"segment_left": SEGMENT}],
    "start": "wait-1h",
    "steps": [
        {"id": "wait-1h", "type": "wait", "duration": "PT1H", "next": "bought"},
        {"id": "bought", "type": "wait_for_event", "event": "Order Completed", "match_key": "cart_id",
         "timeout": "P1D", "next": "done", "timeout_next": "remind"},
        {"id": "remind", "type": "send", "channel": "email", "template": "cart-reminder", "next": "done"},
        {"id": "done", "type": "exit"},
    ],
}

EVERY_STEP_TYPE = {
    "entry": {"type": "segment", "segment_id": SEGMENT},
    "reentry": {"mode": "cooldown", "cooldown": "P30D"},
    "goal": {"event": "Order Completed", "where": [{"property": "total", "op": "gt", "value": 0}]},
    "exit_criteria": [{"event": "message.unsubscribed", "where": [{"property": "channel", "op": "eq",
                                                                   "value": "email"}]}],
    "start": "welcome",
    "steps": [
        {"id": "welcome", "type": "send", "channel": "best", "template": "welcome", "data": {"k": 1},
         "next": "tag"},
        {"id": "tag", "type": "update_profile", "add_tags": ["welcomed"], "remove_tags": ["new"],
         "traits": {"stage": "onboarding"}, "next": "sleep"},
        {"id": "sleep", "type": "wait", "best_send_time": True, "within": "P1D", "next": "until-birthday"},
        {"id": "until-birthday", "type": "wait", "until_trait": "birthday", "offset": "-P3D", "next": "at-launch"},
        {"id": "at-launch", "type": "wait", "until": "2026-05-01T09:00:00Z", "next": "vip"},
        {"id": "vip", "type": "condition",
         "branches": [
             {"when": {"all": [{"loyalty": "tier", "op": "in", "value": ["silver", "gold"]},
                               {"segment": SEGMENT, "in": True}]}, "next": "points", "label": "vip"},
             {"when": {"opened": "welcome"}, "next": "split"},
         ],
         "else": "hook"},
        {"id": "points", "type": "award_points", "points": 100, "program_id": "main", "reason": "vip welcome",
         "next": "coupon"},
        {"id": "coupon", "type": "issue_coupon", "campaign_id": "welcome-10", "next": "done"},
        {"id": "split", "type": "random_split",
         "branches": [{"percent": 50, "next": "test", "label": "A"}, {"percent": 50, "next": "hook"}]},
        {"id": "test", "type": "ab_test",
         "variants": [{"percent": 34, "next": "hook"}, {"percent": 33, "next": "done"},
                      {"percent": 33, "next": "wait-order", "label": "control"}],
         "goal": "Order Completed", "decide_after": "P7D", "winner_share": 90},
        {"id": "hook", "type": "webhook", "url": "https://hooks.example.com/x", "body": {"a": 1}, "next": "done"},
        {"id": "wait-order", "type": "wait_for_event", "event": "Order Completed", "timeout": "PT12H",
         "timeout_next": "again"},
        {"id": "again", "type": "jump", "to": "welcome"},
        {"id": "done", "type": "exit"},
    ],
}


def journey(**changes):
    """A small valid definition (event entry, one send, exit), with top-level keys replaced by `changes`."""
    base = {
        "entry": {"type": "event", "event": "Signed Up"},
        "goal": {"event": "Order Completed"},
        "exit_criteria": [{"event": "message.unsubscribed"}],
        "start": "hello",
        "steps": [
            {"id": "hello", "type": "send", "channel": "email", "template": "welcome", "next": "bye"},
            {"id": "bye", "type": "exit"},
        ],
    }
    base.update(changes)
    return base


def with_steps(*steps, start=None):
    return journey(steps=list(steps), start=start or steps[0]["id"])


def check(definition, **known):
    return validate(orjson.dumps(definition).decode(), **known)


def only_error(definition, **known) -> Issue:
    result = check(definition, **known)
    assert len(result.errors) == 1, result.errors
    assert result.definition is None
    return result.errors[0]


def codes(result):
    return [(e.code, e.path, e.step_id) for e in result.errors]


# --- valid definitions --------------------------------------------------------------------------------------

def test_the_documented_example_is_valid_and_parses_into_typed_steps_with_edges():
    result = check(DOC_EXAMPLE, templates={"cart-reminder"}, segments={SEGMENT})

    assert result.errors == [] and result.warnings == [] and result.valid
    d = result.definition
    assert d.entry == Entry("event", event="Product Added", where=[Compare("property", "price", "gte", 50)],
                            key="cart_id")
    assert d.reentry == Reentry("after_exit")
    assert d.holdout_percent == 10
    assert d.goal == Goal("Order Completed", within=timedelta(days=7), exit=True)
    assert d.exit_criteria == [ExitCriterion(event="message.unsubscribed"), ExitCriterion(segment_left=SEGMENT)]
    assert d.start == "wait-1h"
    assert list(d.steps) == ["wait-1h", "bought", "remind", "done"]
    wait, bought, remind, done = d.steps.values()
    assert isinstance(wait, WaitStep) and wait.duration == timedelta(hours=1) and wait.edges == [("next", "bought")]
    assert isinstance(bought, WaitForEventStep)
    assert (bought.event, bought.match_key, bought.timeout) == ("Order Completed", "cart_id", timedelta(days=1))
    assert bought.edges == [("next", "done"), ("timeout", "remind")]
    assert bought.target("timeout") == "remind" and bought.target("else") is None
    assert isinstance(remind, SendStep) and (remind.channel, remind.template) == ("email", "cart-reminder")
    assert isinstance(done, ExitStep) and done.edges == [] and done.type == "exit"


def test_the_documented_example_verbatim_only_fails_on_its_step_id_with_a_question_mark():
    verbatim = copy.deepcopy(DOC_EXAMPLE)
    verbatim["steps"][0]["next"] = "bought?"
    verbatim["steps"][1]["id"] = "bought?"

    issue = only_error(verbatim)

    assert (issue.code, issue.path, issue.step_id) == ("invalid_field", "/steps/1/id", "bought?")


def test_a_journey_using_every_step_type_is_valid():
    result = check(EVERY_STEP_TYPE, templates={"welcome"}, segments={SEGMENT})

    assert result.errors == []
    assert result.warnings == []
    steps = result.definition.steps
    assert [s.type for s in steps.values()] == [
        "send", "update_profile", "wait", "wait", "wait", "condition", "award_points", "issue_coupon",
        "random_split", "ab_test", "webhook", "wait_for_event", "jump", "exit"]
    assert result.definition.reentry == Reentry("cooldown", timedelta(days=30))
    assert result.definition.holdout_percent == 0
    condition = steps["vip"]
    assert isinstance(condition, ConditionStep)
    assert condition.edges == [("vip", "points"), ("branch_2", "split"), ("else", "hook")]
    assert condition.branches[1].when == Opened("welcome")
    assert condition.branches[0].when == AllOf([Compare("loyalty", "tier", "in", ["silver", "gold"]),
                                                InSegment(SEGMENT, True)])
    split = steps["split"]
    assert isinstance(split, RandomSplitStep) and split.edges == [("A", "test"), ("B", "hook")]
    test = steps["test"]
    assert isinstance(test, ABTestStep)
    assert test.edges == [("A", "hook"), ("B", "done"), ("control", "wait-order")]
    assert (test.goal, test.decide_after, test.winner_share) == ("Order Completed", timedelta(days=7), 90)
    assert isinstance(steps["again"], JumpStep) and steps["again"].edges == [("jump", "welcome")]
    assert steps["sleep"].best_send_time and steps["sleep"].within == timedelta(days=1)
    assert steps["until-birthday"].offset == -timedelta(days=3)
    assert steps["at-launch"].until == dt.datetime(2026, 5, 1, 9, tzinfo=dt.UTC)
    assert steps["hook"].method == "POST"
    assert steps["points"].points == 100


@pytest.mark.parametrize("entry", [
    {"type": "api"},
    {"type": "segment", "segment_id": SEGMENT, "on": "exit"},
    {"type": "tier_change", "to": "gold"},
    {"type": "tier_change", "direction": "any"},
    {"type": "schedule", "every": "daily", "at": "09:30", "segment_id": SEGMENT},
    {"type": "schedule", "every": "weekly", "at": "18:00", "weekday": 7, "segment_id": SEGMENT},
    {"type": "schedule", "every": "once", "at": "00:00", "date": "2026-12-24", "segment_id": SEGMENT},
])
def test_every_entry_type_validates(entry):
    assert check(journey(entry=entry)).errors == []


def test_entry_defaults_and_schedule_fields_are_typed():
    tier = check(journey(entry={"type": "tier_change"})).definition.entry
    assert (tier.direction, tier.to) == ("upgrade", None)
    weekly = check(journey(entry={"type": "schedule", "every": "weekly", "at": "18:05", "weekday": 5,
                                  "segment_id": SEGMENT})).definition.entry
    assert (weekly.at, weekly.weekday) == (dt.time(18, 5), 5)
    once = check(journey(entry={"type": "schedule", "every": "once", "at": "08:00", "date": "2026-02-28",
                                "segment_id": SEGMENT})).definition.entry
    assert once.date == dt.date(2026, 2, 28)
    assert check(journey()).definition.reentry == Reentry("never")


def test_null_optional_fields_count_as_absent():
    definition = with_steps({"id": "a", "type": "wait", "duration": "PT1H", "next": None})
    definition["goal"] = {"event": "Order Completed", "within": None}
    result = check(definition)
    assert result.errors == []
    assert result.definition.steps["a"].edges == []


# --- one test per error code --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "{", "{\"entry\": }", "nope"])
def test_text_that_is_not_json_is_invalid_json_at_the_root(text):
    result = validate(text)
    assert codes(result) == [("invalid_json", "", "")]
    assert result.definition is None


@pytest.mark.parametrize("text", ["[]", "\"journey\"", "42", "null"])
def test_json_that_is_not_an_object_is_not_an_object(text):
    assert codes(validate(text)) == [("not_an_object", "", "")]


def test_no_entry_is_missing_entry():
    definition = journey()
    del definition["entry"]
    issue = only_error(definition)
    assert (issue.code, issue.path, issue.step_id) == ("missing_entry", "/entry", "")


def test_an_unknown_entry_type_is_unknown_entry_type():
    issue = only_error(journey(entry={"type": "webhook"}))
    assert (issue.code, issue.path) == ("unknown_entry_type", "/entry/type")


@pytest.mark.parametrize(("entry", "code", "path"), [
    ({}, "missing_field", "/entry/type"),
    ({"type": "event"}, "missing_field", "/entry/event"),
    ({"type": "event", "event": ""}, "invalid_field", "/entry/event"),
    ({"type": "event", "event": "x", "key": 3}, "invalid_field", "/entry/key"),
    ({"type": "segment"}, "missing_field", "/entry/segment_id"),
    ({"type": "segment", "segment_id": SEGMENT, "on": "stay"}, "invalid_field", "/entry/on"),
    ({"type": "tier_change", "direction": "sideways"}, "invalid_field", "/entry/direction"),
    ({"type": "schedule", "at": "09:00", "segment_id": SEGMENT}, "missing_field", "/entry/every"),
    ({"type": "schedule", "every": "hourly", "at": "09:00", "segment_id": SEGMENT}, "invalid_field", "/entry/every"),
    ({"type": "schedule", "every": "daily", "segment_id": SEGMENT}, "missing_field", "/entry/at"),
    ({"type": "schedule", "every": "daily", "at": "25:00", "segment_id": SEGMENT}, "invalid_field", "/entry/at"),
    ({"type": "schedule", "every": "daily", "at": "9:00", "segment_id": SEGMENT}, "invalid_field", "/entry/at"),
    ({"type": "schedule", "every": "daily", "at": "09:00"}, "missing_field", "/entry/segment_id"),
    ({"type": "schedule", "every": "weekly", "at": "09:00", "segment_id": SEGMENT}, "missing_field",
     "/entry/weekday"),
    ({"type": "schedule", "every": "weekly", "at": "09:00", "weekday": 8, "segment_id": SEGMENT},
     "invalid_field", "/entry/weekday"),
    ({"type": "schedule", "every": "daily", "at": "09:00", "weekday": 1, "segment_id": SEGMENT},
     "invalid_field", "/entry/weekday"),
    ({"type": "schedule", "every": "once", "at": "09:00", "segment_id": SEGMENT}, "missing_field", "/entry/date"),
    ({"type": "schedule", "every": "once", "at": "09:00", "date": "2026-02-30", "segment_id": SEGMENT},
     "invalid_field", "/entry/date"),
    ("event", "invalid_field", "/entry"),
])
def test_entry_fields_are_checked_per_type(entry, code, path):
    issue = only_error(journey(entry=entry))
    assert (issue.code, issue.path, issue.step_id) == (code, path, "")


@pytest.mark.parametrize(("changes", "code", "path"), [
    ({"reentry": {"mode": "always"}}, "invalid_field", "/reentry/mode"),
    ({"reentry": {"mode": "cooldown"}}, "missing_field", "/reentry/cooldown"),
    ({"reentry": {"mode": "cooldown", "cooldown": "1 day"}}, "invalid_duration", "/reentry/cooldown"),
    ({"reentry": {"mode": "never", "cooldown": "P1D"}}, "invalid_field", "/reentry/cooldown"),
    ({"holdout_percent": 51}, "invalid_field", "/holdout_percent"),
    ({"holdout_percent": -1}, "invalid_field", "/holdout_percent"),
    ({"holdout_percent": "10"}, "invalid_field", "/holdout_percent"),
    ({"goal": {"within": "P1D"}}, "missing_field", "/goal/event"),
    ({"goal": {"event": "Order Completed", "within": "P1M"}}, "invalid_duration", "/goal/within"),
    ({"goal": {"event": "Order Completed", "exit": "yes"}}, "invalid_field", "/goal/exit"),
    ({"goal": "Order Completed"}, "invalid_field", "/goal"),
    ({"exit_criteria": [{"event": "message.unsubscribed"}, {"segment": SEGMENT}]}, "invalid_field",
     "/exit_criteria/1"),
    ({"exit_criteria": [{"event": "message.unsubscribed", "segment_left": SEGMENT}]}, "invalid_field",
     "/exit_criteria/0"),
    ({"exit_criteria": {"event": "message.unsubscribed"}}, "invalid_field", "/exit_criteria"),
])
def test_reentry_holdout_goal_and_exit_criteria_are_checked(changes, code, path):
    issue = only_error(journey(**changes))
    assert (issue.code, issue.path) == (code, path)


def test_a_holdout_of_fifty_percent_and_a_fractional_one_are_allowed():
    assert check(journey(holdout_percent=50)).definition.holdout_percent == 50
    assert check(journey(holdout_percent=2.5)).definition.holdout_percent == 2.5


def test_a_reused_step_id_is_duplicate_step_id_on_the_second():
    issue = only_error(with_steps(
        {"id": "a", "type": "wait", "duration": "PT1H", "next": "b"},
        {"id": "a", "type": "exit"},
        {"id": "b", "type": "exit"},
    ))
    assert (issue.code, issue.path, issue.step_id) == ("duplicate_step_id", "/steps/1/id", "a")


@pytest.mark.parametrize(("step_id", "code"), [
    (None, "missing_field"), ("", "invalid_field"), ("a b", "invalid_field"), ("x" * 65, "invalid_field"),
    (7, "invalid_field"),
])
def test_step_ids_follow_the_pattern(step_id, code):
    step = {"type": "exit"} if step_id is None else {"id": step_id, "type": "exit"}
    result = check(with_steps({"id": "a", "type": "wait", "duration": "PT1H"}, step))
    assert ("/steps/1/id", code) in [(e.path, e.code) for e in result.errors]


def test_an_unknown_step_type_is_unknown_step_type_and_its_next_still_counts():
    issue = only_error(with_steps(
        {"id": "a", "type": "sms_blast", "next": "b"},
        {"id": "b", "type": "exit"},
    ))
    assert (issue.code, issue.path, issue.step_id) == ("unknown_step_type", "/steps/0/type", "a")


def test_a_step_without_type_is_missing_field():
    issue = only_error(with_steps({"id": "a"}))
    assert (issue.code, issue.path, issue.step_id) == ("missing_field", "/steps/0/type", "a")


@pytest.mark.parametrize("start", [None, "nowhere", 3])
def test_a_start_naming_no_step_is_missing_start(start):
    definition = journey(start=start)
    issue = only_error(definition)
    assert (issue.code, issue.path) == ("missing_start", "/start")


@pytest.mark.parametrize("steps", [None, [], {"a": {"type": "exit"}}])
def test_steps_must_be_a_non_empty_list(steps):
    result = check(journey(steps=steps))
    assert codes(result)[0] in [("missing_field", "/steps", ""), ("invalid_field", "/steps", "")]
    assert ("missing_start", "/start", "") in codes(result)


@pytest.mark.parametrize(("step", "path"), [
    ({"id": "a", "type": "wait", "duration": "PT1H", "next": "ghost"}, "/steps/0/next"),
    ({"id": "a", "type": "wait_for_event", "event": "x", "timeout": "P1D", "timeout_next": "ghost"},
     "/steps/0/timeout_next"),
    ({"id": "a", "type": "condition", "branches": [{"when": {"trait": "vip", "op": "exists"}, "next": "ghost"}]},
     "/steps/0/branches/0/next"),
    ({"id": "a", "type": "condition", "branches": [{"when": {"trait": "vip", "op": "exists"}}], "else": "ghost"},
     "/steps/0/else"),
    ({"id": "a", "type": "random_split", "branches": [{"percent": 50}, {"percent": 50, "next": "ghost"}]},
     "/steps/0/branches/1/next"),
    ({"id": "a", "type": "jump", "to": "ghost"}, "/steps/0/to"),
])
def test_an_edge_naming_no_step_is_dangling_edge_at_the_edge(step, path):
    issue = only_error(with_steps(step))
    assert (issue.code, issue.path, issue.step_id) == ("dangling_edge", path, "a")


def test_a_step_no_path_leads_to_is_unreachable_step():
    result = check(with_steps(
        {"id": "a", "type": "wait", "duration": "PT1H"},
        {"id": "orphan", "type": "wait", "duration": "PT1H", "next": "also-orphan"},
        {"id": "also-orphan", "type": "exit"},
    ))
    assert codes(result) == [("unreachable_step", "/steps/1", "orphan"),
                             ("unreachable_step", "/steps/2", "also-orphan")]


def test_reachability_follows_every_kind_of_edge():
    assert check(EVERY_STEP_TYPE).errors == []  # every step there is reached through a different edge kind


def test_a_jump_loop_without_a_wait_is_cycle_without_wait_at_its_first_step():
    result = check(with_steps(
        {"id": "send", "type": "send", "channel": "sms", "template": "t", "next": "again"},
        {"id": "again", "type": "jump", "to": "send"},
    ))
    assert codes(result) == [("cycle_without_wait", "/steps/0", "send")]
    assert "send → again → send" in result.errors[0].message


def test_a_step_jumping_to_itself_is_cycle_without_wait():
    issue = only_error(with_steps({"id": "spin", "type": "jump", "to": "spin"}))
    assert (issue.code, issue.path, issue.step_id) == ("cycle_without_wait", "/steps/0", "spin")


def test_a_loop_through_a_timed_wait_or_a_wait_for_event_is_allowed():
    with_wait = with_steps(
        {"id": "nag", "type": "send", "channel": "email", "template": "t", "next": "pause"},
        {"id": "pause", "type": "wait", "duration": "P1D", "next": "again"},
        {"id": "again", "type": "jump", "to": "nag"},
    )
    with_event_wait = with_steps(
        {"id": "nag", "type": "send", "channel": "email", "template": "t", "next": "listen"},
        {"id": "listen", "type": "wait_for_event", "event": "Order Completed", "timeout": "P2D",
         "next": "done", "timeout_next": "nag"},
        {"id": "done", "type": "exit"},
    )
    assert check(with_wait).errors == []
    assert check(with_event_wait).errors == []


def test_a_wait_until_a_fixed_time_does_not_make_a_loop_safe():
    issue = only_error(with_steps(
        {"id": "later", "type": "wait", "until": "2026-01-01T00:00:00Z", "next": "again"},
        {"id": "again", "type": "jump", "to": "later"},
    ))
    assert (issue.code, issue.step_id) == ("cycle_without_wait", "later")


def test_an_inner_loop_that_skips_the_wait_is_caught_even_when_an_outer_one_waits():
    result = check(with_steps(
        {"id": "check", "type": "condition",
         "branches": [{"when": {"trait": "vip", "op": "eq", "value": True}, "next": "pause"}], "else": "again"},
        {"id": "pause", "type": "wait", "duration": "PT1H", "next": "check"},
        {"id": "again", "type": "jump", "to": "check"},
    ))
    assert codes(result) == [("cycle_without_wait", "/steps/0", "check")]
    assert "check → again → check" in result.errors[0].message


@pytest.mark.parametrize(("step", "path"), [
    ({"id": "a", "type": "wait", "duration": "P1M"}, "/steps/0/duration"),
    ({"id": "a", "type": "wait", "duration": "P1Y"}, "/steps/0/duration"),
    ({"id": "a", "type": "wait", "duration": "-PT1H"}, "/steps/0/duration"),
    ({"id": "a", "type": "wait", "duration": "PT0S"}, "/steps/0/duration"),
    ({"id": "a", "type": "wait", "duration": 3600}, "/steps/0/duration"),
    ({"id": "a", "type": "wait", "until_trait": "birthday", "offset": "3 days"}, "/steps/0/offset"),
    ({"id": "a", "type": "wait", "best_send_time": True, "within": "PT"}, "/steps/0/within"),
    ({"id": "a", "type": "wait_for_event", "event": "x", "timeout": "P"}, "/steps/0/timeout"),
    ({"id": "a", "type": "ab_test", "variants": [{"percent": 50}, {"percent": 50}], "goal": "x",
      "decide_after": "PT1H30", "winner_share": 100}, "/steps/0/decide_after"),
])
def test_bad_durations_are_invalid_duration_at_the_field(step, path):
    issue = only_error(with_steps(step))
    assert (issue.code, issue.path, issue.step_id) == ("invalid_duration", path, "a")


def test_a_negative_offset_is_allowed_on_until_trait():
    step = check(with_steps({"id": "a", "type": "wait", "until_trait": "renewal_date", "offset": "-P3D"}))
    assert step.definition.steps["a"].offset == timedelta(days=-3)


@pytest.mark.parametrize(("branches", "path"), [
    ([{"percent": 50}, {"percent": 40}], "/steps/0/branches"),
    ([{"percent": 60}, {"percent": 60}], "/steps/0/branches"),
    ([{"percent": 0}, {"percent": 100}], "/steps/0/branches/0/percent"),
    ([{"percent": 50}, {"percent": "50"}], "/steps/0/branches/1/percent"),
])
def test_split_percents_that_do_not_sum_to_100_are_invalid_percentages(branches, path):
    issue = only_error(with_steps({"id": "a", "type": "random_split", "branches": branches}))
    assert (issue.code, issue.path, issue.step_id) == ("invalid_percentages", path, "a")


def test_ab_test_variants_and_winner_share_are_percentages():
    step = {"id": "a", "type": "ab_test", "variants": [{"percent": 70}, {"percent": 20}], "goal": "x",
            "decide_after": "P1D", "winner_share": 0}
    result = check(with_steps(step))
    assert codes(result) == [("invalid_percentages", "/steps/0/variants", "a"),
                             ("invalid_percentages", "/steps/0/winner_share", "a")]


def test_a_template_the_caller_does_not_know_is_unknown_template():
    definition = journey()
    issue = only_error(definition, templates={"other"})
    assert (issue.code, issue.path, issue.step_id) == ("unknown_template", "/steps/0/template", "hello")
    assert check(definition, templates=None).errors == []  # cannot check: no error
    assert check(definition, templates={"welcome"}).errors == []


def test_segments_the_caller_does_not_know_are_unknown_segment_wherever_they_are_named():
    definition = journey(
        entry={"type": "segment", "segment_id": "s-entry"},
        exit_criteria=[{"event": "message.unsubscribed"}, {"segment_left": "s-left"}],
        steps=[
            {"id": "hello", "type": "condition", "branches": [
                {"when": {"not": {"segment": "s-when", "in": False}}, "next": "bye"}]},
            {"id": "bye", "type": "exit"},
        ],
    )
    result = check(definition, segments={"s-known"})
    assert codes(result) == [
        ("unknown_segment", "/entry/segment_id", ""),
        ("unknown_segment", "/exit_criteria/1/segment_left", ""),
        ("unknown_segment", "/steps/0/branches/0/when/not/segment", "hello"),
    ]
    assert check(definition).errors == []
    assert check(definition, segments={"s-entry", "s-left", "s-when"}).errors == []


@pytest.mark.parametrize(("when", "path"), [
    ({"trait": "locale", "op": "like", "value": "zh"}, "/steps/0/branches/0/when/op"),
    ({"trait": "locale", "value": "zh"}, "/steps/0/branches/0/when/op"),
    ({"trait": "locale", "op": "eq"}, "/steps/0/branches/0/when/value"),
    ({"trait": "locale", "op": "exists", "value": 1}, "/steps/0/branches/0/when/value"),
    ({"trait": "locale", "op": "in", "value": "zh"}, "/steps/0/branches/0/when/value"),
    ({"trait": "locale", "op": "in", "value": []}, "/steps/0/branches/0/when/value"),
    ({"trait": "locale", "op": "eq", "value": {"a": 1}}, "/steps/0/branches/0/when/value"),
    ({"loyalty": "points", "op": "gte", "value": [1]}, "/steps/0/branches/0/when/value"),
    ({"trait": "x", "op": "contains", "value": None}, "/steps/0/branches/0/when/value"),
    ({"trait": "", "op": "exists"}, "/steps/0/branches/0/when/trait"),
    ({"trait": "a", "segment": "s", "op": "exists"}, "/steps/0/branches/0/when"),
    ({"colour": "red"}, "/steps/0/branches/0/when"),
    ({"property": "price", "op": "gt", "value": 1}, "/steps/0/branches/0/when"),
    ({"segment": "s", "in": "yes"}, "/steps/0/branches/0/when/in"),
    ({"trait": "a", "op": "exists", "typo/key": 1}, "/steps/0/branches/0/when/typo~1key"),
    ({"all": []}, "/steps/0/branches/0/when/all"),
    ({"any": [{"trait": "a", "op": "exists"}, {"event_property": "total", "op": "gt"}]},
     "/steps/0/branches/0/when/any/1/value"),
    ({"not": {"opened": "a"}}, "/steps/0/branches/0/when/not/opened"),
    ({"opened": "ghost"}, "/steps/0/branches/0/when/opened"),
    ("vip", "/steps/0/branches/0/when"),
])
def test_bad_conditions_are_invalid_condition_at_the_bad_node(when, path):
    issue = only_error(with_steps(
        {"id": "a", "type": "condition", "branches": [{"when": when, "next": "b"}]},
        {"id": "b", "type": "exit"},
    ))
    assert (issue.code, issue.path, issue.step_id) == ("invalid_condition", path, "a")


def test_where_filters_compare_event_properties_only():
    issue = only_error(journey(entry={"type": "event", "event": "x", "where": [{"trait": "vip", "op": "exists"}]}))
    assert (issue.code, issue.path) == ("invalid_condition", "/entry/where/0")
    issue = only_error(journey(entry={"type": "event", "event": "x", "where": {"property": "a", "op": "exists"}}))
    assert (issue.code, issue.path) == ("invalid_condition", "/entry/where")


def test_conditions_nest_at_most_ten_levels():
    when = {"trait": "vip", "op": "exists"}
    for _ in range(10):
        when = {"not": when}
    issue = only_error(with_steps(
        {"id": "a", "type": "condition", "branches": [{"when": when, "next": "b"}]},
        {"id": "b", "type": "exit"},
    ))
    assert issue.code == "invalid_condition"
    assert issue.path == "/steps/0/branches/0/when" + "/not" * 10


@pytest.mark.parametrize(("step", "code", "path"), [
    ({"id": "a", "type": "send", "channel": "fax", "template": "t"}, "invalid_field", "/steps/0/channel"),
    ({"id": "a", "type": "send", "template": "t"}, "missing_field", "/steps/0/channel"),
    ({"id": "a", "type": "send", "channel": "sms"}, "missing_field", "/steps/0/template"),
    ({"id": "a", "type": "send", "channel": "sms", "template": "t", "data": [1]}, "invalid_field", "/steps/0/data"),
    ({"id": "a", "type": "webhook", "url": "http://example.com/hook"}, "invalid_field", "/steps/0/url"),
    ({"id": "a", "type": "webhook", "url": "https://"}, "invalid_field", "/steps/0/url"),
    ({"id": "a", "type": "webhook", "url": "https://x.example/ hook"}, "invalid_field", "/steps/0/url"),
    ({"id": "a", "type": "webhook"}, "missing_field", "/steps/0/url"),
    ({"id": "a", "type": "webhook", "url": "https://x.example", "method": "post"}, "invalid_field",
     "/steps/0/method"),
    ({"id": "a", "type": "award_points", "points": 0, "reason": "r"}, "invalid_field", "/steps/0/points"),
    ({"id": "a", "type": "award_points", "points": -5, "reason": "r"}, "invalid_field", "/steps/0/points"),
    ({"id": "a", "type": "award_points", "points": 1.5, "reason": "r"}, "invalid_field", "/steps/0/points"),
    ({"id": "a", "type": "award_points", "points": True, "reason": "r"}, "invalid_field", "/steps/0/points"),
    ({"id": "a", "type": "award_points", "reason": "r"}, "missing_field", "/steps/0/points"),
    ({"id": "a", "type": "award_points", "points": 10}, "missing_field", "/steps/0/reason"),
    ({"id": "a", "type": "issue_coupon"}, "missing_field", "/steps/0/campaign_id"),
    ({"id": "a", "type": "update_profile"}, "missing_field", "/steps/0"),
    ({"id": "a", "type": "update_profile", "add_tags": "vip"}, "invalid_field", "/steps/0/add_tags"),
    ({"id": "a", "type": "update_profile", "remove_tags": [""]}, "invalid_field", "/steps/0/remove_tags"),
    ({"id": "a", "type": "update_profile", "traits": ["x"]}, "invalid_field", "/steps/0/traits"),
    ({"id": "a", "type": "jump"}, "missing_field", "/steps/0/to"),
    ({"id": "a", "type": "wait"}, "missing_field", "/steps/0"),
    ({"id": "a", "type": "wait", "duration": "PT1H", "until": "2026-01-01T00:00:00Z"}, "invalid_field",
     "/steps/0/until"),
    ({"id": "a", "type": "wait", "until": "2026-01-01T00:00:00"}, "invalid_field", "/steps/0/until"),
    ({"id": "a", "type": "wait", "until": "tomorrow"}, "invalid_field", "/steps/0/until"),
    ({"id": "a", "type": "wait", "duration": "PT1H", "offset": "P1D"}, "invalid_field", "/steps/0/offset"),
    ({"id": "a", "type": "wait", "best_send_time": False}, "invalid_field", "/steps/0/best_send_time"),
    ({"id": "a", "type": "wait", "duration": "PT1H", "within": "P1D"}, "invalid_field", "/steps/0/within"),
    ({"id": "a", "type": "wait_for_event", "timeout": "P1D"}, "missing_field", "/steps/0/event"),
    ({"id": "a", "type": "wait_for_event", "event": "x"}, "missing_field", "/steps/0/timeout"),
    ({"id": "a", "type": "condition"}, "missing_field", "/steps/0/branches"),
    ({"id": "a", "type": "condition", "branches": []}, "invalid_field", "/steps/0/branches"),
    ({"id": "a", "type": "condition", "branches": [{"label": "x"}]}, "missing_field", "/steps/0/branches/0/when"),
    ({"id": "a", "type": "condition", "branches": [{"when": {"trait": "x", "op": "exists"}}], "next": "a"},
     "invalid_field", "/steps/0/next"),
    ({"id": "a", "type": "random_split", "branches": [{"percent": 100}]}, "invalid_field", "/steps/0/branches"),
    ({"id": "a", "type": "random_split", "branches": [{"percent": 50, "label": "x"}, {"percent": 50, "label": "x"}]},
     "invalid_field", "/steps/0/branches/1/label"),
    ({"id": "a", "type": "random_split", "branches": [{"percent": 50}, {}]}, "missing_field",
     "/steps/0/branches/1/percent"),
    ({"id": "a", "type": "ab_test", "variants": [{"percent": 50}, {"percent": 50}], "decide_after": "P1D",
      "winner_share": 100}, "missing_field", "/steps/0/goal"),
    ({"id": "a", "type": "ab_test", "variants": [{"percent": 50}, {"percent": 50}], "goal": "x",
      "winner_share": 100}, "missing_field", "/steps/0/decide_after"),
    ({"id": "a", "type": "ab_test", "variants": [{"percent": 50}, {"percent": 50}], "goal": "x",
      "decide_after": "P1D"}, "missing_field", "/steps/0/winner_share"),
    ({"id": "a", "type": "exit", "next": "a"}, "invalid_field", "/steps/0/next"),
])
def test_step_fields_are_checked_per_type(step, code, path):
    issue = only_error(with_steps(step))
    assert (issue.code, issue.path, issue.step_id) == (code, path, "a")


def test_a_step_that_is_not_an_object_is_invalid_field():
    result = check(journey(steps=[{"id": "a", "type": "exit"}, "exit"], start="a"))
    assert codes(result) == [("invalid_field", "/steps/1", "")]


def test_all_errors_are_collected_at_once_in_document_order():
    result = check({
        "entry": {"type": "event"},
        "reentry": {"mode": "sometimes"},
        "holdout_percent": 80,
        "goal": {"event": "Order Completed"},
        "start": "a",
        "steps": [
            {"id": "a", "type": "wait", "duration": "P1M", "next": "b"},
            {"id": "b", "type": "send", "channel": "pigeon", "template": "nope", "next": "ghost"},
            {"id": "b", "type": "exit"},
            {"id": "c", "type": "webhook", "url": "http://x.example"},
            {"id": "d", "type": "teleport"},
        ],
    }, templates={"welcome"})
    assert codes(result) == [
        ("missing_field", "/entry/event", ""),
        ("invalid_field", "/reentry/mode", ""),
        ("invalid_field", "/holdout_percent", ""),
        ("invalid_duration", "/steps/0/duration", "a"),
        ("invalid_field", "/steps/1/channel", "b"),
        ("unknown_template", "/steps/1/template", "b"),
        ("duplicate_step_id", "/steps/2/id", "b"),
        ("invalid_field", "/steps/3/url", "c"),
        ("unknown_step_type", "/steps/4/type", "d"),
        ("dangling_edge", "/steps/1/next", "b"),
        ("unreachable_step", "/steps/3", "c"),
        ("unreachable_step", "/steps/4", "d"),
    ]
    assert result.definition is None and not result.valid


def test_every_issue_has_a_message():
    result = check({"entry": {"type": "nope"}, "steps": [{"id": "a", "type": "jump", "to": "a"}]})
    assert result.errors and all(issue.message for issue in result.errors)


# --- warnings -----------------------------------------------------------------------------------------------

def test_a_journey_without_a_goal_is_valid_with_a_no_goal_warning():
    definition = journey()
    del definition["goal"]
    result = check(definition)
    assert result.errors == [] and result.definition is not None and result.definition.goal is None
    assert [(w.code, w.path) for w in result.warnings] == [("no_goal", "/goal")]


def test_sending_without_exiting_on_unsubscribe_warns_on_the_first_send():
    definition = journey(exit_criteria=[{"segment_left": SEGMENT}])
    result = check(definition)
    assert result.errors == [] and result.definition is not None
    assert [(w.code, w.path, w.step_id) for w in result.warnings] == [
        ("no_unsubscribe_exit", "/exit_criteria", "hello")]
    assert '{"event": "message.unsubscribed"}' in result.warnings[0].message


def test_a_journey_that_sends_nothing_needs_no_unsubscribe_exit():
    result = check(with_steps({"id": "a", "type": "award_points", "points": 5, "reason": "thanks"}))
    assert result.warnings == [] and result.errors == []


def test_warnings_are_reported_alongside_errors():
    result = check(journey(goal=None, exit_criteria=None, start="ghost"))
    assert [e.code for e in result.errors] == ["missing_start"]
    assert [w.code for w in result.warnings] == ["no_goal", "no_unsubscribe_exit"]


# --- durations ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("PT30M", timedelta(minutes=30)),
    ("P1D", timedelta(days=1)),
    ("P2DT12H", timedelta(days=2, hours=12)),
    ("PT1H30M15S", timedelta(hours=1, minutes=30, seconds=15)),
    ("PT0.5S", timedelta(milliseconds=500)),
    ("PT90M", timedelta(minutes=90)),
    ("P2W", timedelta(days=14)),
    ("-P3D", timedelta(days=-3)),
    ("-PT15M", timedelta(minutes=-15)),
    ("PT0S", timedelta(0)),
    ("P3650D", timedelta(days=3650)),
])
def test_parse_duration_reads_iso_8601_days_hours_minutes_seconds(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["P1M", "P1Y", "P1Y2M3D", "-P2M", "P1MT1H"])
def test_parse_duration_refuses_months_and_years(text):
    with pytest.raises(ValueError, match="months and years"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "1D", "PT1", "pt1h", "P1H", "PT1D", "P1.5D", "+P1D",
                                  " P1D", "P-1D", "P3651D", "P" + "9" * 20 + "D", "P" + "9" * 5000 + "D", 30, None])
def test_parse_duration_refuses_anything_else(text):
    with pytest.raises(ValueError):
        parse_duration(text)


# --- condition evaluation -----------------------------------------------------------------------------------

PERSON = {
    "traits": {"locale": "zh-CN", "age": 34, "vip": True, "tags": ["new", "shoes"], "address": {"city": "Lyon"},
               "score": "12.5", "nothing": None},
    "segments": {"s-vip"},
    "loyalty": {"tier": "gold", "points": 1200},
    "context": {"total": 150, "cart_id": "c1"},
    "opened": {"welcome"},
}


def holds(cond):
    return evaluate_condition(cond, **PERSON)


@pytest.mark.parametrize(("cond", "expected"), [
    (Compare("trait", "locale", "eq", "zh-CN"), True),
    (Compare("trait", "locale", "eq", "en"), False),
    (Compare("trait", "locale", "neq", "en"), True),
    (Compare("trait", "missing", "neq", "en"), True),
    (Compare("trait", "missing", "eq", None), True),
    (Compare("trait", "vip", "eq", 1), False),  # a boolean is not a number
    (Compare("trait", "vip", "eq", True), True),
    (Compare("trait", "age", "eq", 34.0), True),
    (Compare("trait", "age", "gt", 30), True),
    (Compare("trait", "age", "gt", 34), False),
    (Compare("trait", "age", "gte", 34), True),
    (Compare("trait", "age", "lt", 34), False),
    (Compare("trait", "age", "lte", 34), True),
    (Compare("trait", "score", "gt", 12), True),  # a numeric string compares as a number
    (Compare("trait", "locale", "gt", 1), False),  # a non-numeric string never orders against a number
    (Compare("trait", "locale", "gte", "zh"), True),  # strings order as strings
    (Compare("trait", "age", "gt", "30"), False),  # but a number is not a string
    (Compare("trait", "missing", "lt", 100), False),
    (Compare("trait", "locale", "in", ["en", "zh-CN"]), True),
    (Compare("trait", "locale", "in", ["en"]), False),
    (Compare("trait", "tags", "in", ["shoes", "bags"]), True),  # a list overlaps
    (Compare("trait", "locale", "not_in", ["en"]), True),
    (Compare("trait", "locale", "not_in", ["zh-CN"]), False),
    (Compare("trait", "missing", "in", ["x"]), False),
    (Compare("trait", "missing", "not_in", ["x"]), True),
    (Compare("trait", "locale", "contains", "CN"), True),
    (Compare("trait", "locale", "contains", "cn"), False),
    (Compare("trait", "tags", "contains", "shoes"), True),
    (Compare("trait", "tags", "contains", "hats"), False),
    (Compare("trait", "age", "contains", 3), False),
    (Compare("trait", "locale", "exists"), True),
    (Compare("trait", "nothing", "exists"), False),  # null is absent
    (Compare("trait", "missing", "exists"), False),
    (Compare("trait", "missing", "not_exists"), True),
    (Compare("trait", "locale", "not_exists"), False),
    (Compare("trait", "address.city", "eq", "Lyon"), True),  # dotted keys read nested traits
    (Compare("trait", "address.zip", "exists"), False),
    (Compare("loyalty", "tier", "in", ["silver", "gold"]), True),
    (Compare("loyalty", "points", "gte", 1000), True),
    (Compare("event_property", "total", "gt", 100), True),
    (Compare("event_property", "total", "gt", 200), False),
    (InSegment("s-vip"), True),
    (InSegment("s-vip", member=False), False),
    (InSegment("s-other"), False),
    (InSegment("s-other", member=False), True),
    (Opened("welcome"), True),
    (Opened("reminder"), False),
    (AllOf([InSegment("s-vip"), Opened("welcome")]), True),
    (AllOf([InSegment("s-vip"), Opened("reminder")]), False),
    (AnyOf([InSegment("s-other"), Opened("welcome")]), True),
    (AnyOf([InSegment("s-other"), Opened("reminder")]), False),
    (Not(Opened("reminder")), True),
    (Not(AllOf([InSegment("s-vip"), Compare("loyalty", "tier", "eq", "gold")])), False),
])
def test_evaluate_condition_truth_table(cond, expected):
    assert holds(cond) is expected


def test_parsed_conditions_evaluate():
    result = check(EVERY_STEP_TYPE)
    vip = result.definition.steps["vip"].branches
    in_segment = {**PERSON, "segments": {SEGMENT}}
    assert evaluate_condition(vip[0].when, **in_segment) is True
    assert evaluate_condition(vip[0].when, **{**in_segment, "loyalty": {"tier": "bronze"}}) is False
    assert holds(vip[0].when) is False  # gold, but not in the segment
    assert holds(vip[1].when) is True


def test_matches_applies_every_where_filter_to_the_event_properties():
    where = check(DOC_EXAMPLE).definition.entry.where
    assert matches(where, {"price": 50}) is True
    assert matches(where, {"price": 49.99}) is False
    assert matches(where, {}) is False
    assert matches(None, {}) is True
    assert matches([], {"price": 1}) is True
    both = [Compare("property", "price", "gte", 50), Compare("property", "currency", "eq", "EUR")]
    assert matches(both, {"price": 60, "currency": "EUR"}) is True
    assert matches(both, {"price": 60, "currency": "USD"}) is False
    assert matches([AnyOf([Compare("property", "sku", "in", ["a", "b"]), Not(Compare("property", "x",
                                                                                     "exists"))])],
                   {"sku": "c", "x": 1}) is False
