"""Test mode and dry runs: TestJourney (one test profile, waits fast-forwarded, effects listed, not
performed) and DryRunJourney (how many would have entered, estimated by identity)."""

from __future__ import annotations

import orjson

from journey.domain import definition as grammar
from journey.domain import engine
from journey.grpc_api.base import Context, ServicerBase
from journey.grpc_api.definitions_api import issues
from journey.repo import journeys as journey_repo
from mcloud.identity.v1 import identity_pb2
from mcloud.journey.v1 import journey_pb2 as pb
from mcloud_common.errors import InvalidArgument
from mcloud_common.grpc_client import tenant_metadata
from mcloud_common.grpc_server import tenant_id
from mcloud_common.ids import parse_uuid
from mcloud_common.timestamps import set_timestamp

MAX_WAITS = 200


class SimulationApi(ServicerBase):
    async def _definition(self, tenant: str, request) -> str:
        source = request.WhichOneof("source")
        if source is None:
            raise InvalidArgument("journey_id or definition_json is required", code="missing_source",
                                  field="journey_id")
        if source == "definition_json":
            return request.definition_json
        async with self._pool.acquire() as conn:
            return (await journey_repo.get(conn, tenant, journey_repo.journey_id(request.journey_id)))["draft"]

    async def TestJourney(self, request: pb.TestJourneyRequest, context: Context) -> pb.TestJourneyResponse:
        tenant = tenant_id(context)
        if parse_uuid(request.profile_id) is None:
            raise InvalidArgument("profile_id must be a UUID", code="invalid_profile_id", field="profile_id")
        text = await self._definition(tenant, request)
        checked = grammar.validate(text)
        if checked.errors:
            return pb.TestJourneyResponse(errors=issues(checked.errors), status="invalid")
        definition = orjson.loads(text)
        entry_context = orjson.loads(request.context_json) if request.context_json else {}
        if not isinstance(entry_context, dict):
            raise InvalidArgument("context_json must be a JSON object", code="invalid_context", field="context_json")
        row = {"profile_id": request.profile_id, "context": entry_context}
        facts = await self._effects.facts(tenant, row, definition)
        pending_events = list(request.events)
        now = start = self._clock.now()
        state = engine.State(f"test-{request.profile_id}", definition["start"], entry_context)
        out = pb.TestJourneyResponse()
        for _ in range(MAX_WAITS):
            result = engine.advance(definition, state, now, facts, checked.definition)
            for step_id, kind, outcome in result.log:
                t = out.trace.add(step_id=step_id, step_type=kind, outcome=outcome)
                set_timestamp(t.at, now)
            out.effects.extend(pb.TestEffect(step_id=e.step_id, kind=e.kind,
                                             spec_json=orjson.dumps(e.spec).decode()) for e in result.effects)
            if result.status != "active":
                out.status, out.exit_reason = result.status, result.exit_reason
                break
            arrived = bool(result.waiting_for) and result.waiting_for in pending_events
            if arrived:
                pending_events.remove(result.waiting_for)
            else:
                now = max(now, result.waiting_until)  # fast-forward to the timer
            state = engine.State(state.enrollment_id, result.step_id, entry_context, result.visits,
                                 result.waiting_until, result.waiting_for, event_arrived=arrived)
        else:
            out.status, out.exit_reason = "exited", "too_many_waits"
        out.waited_seconds = int((now - start).total_seconds())
        return out

    async def DryRunJourney(self, request: pb.DryRunJourneyRequest, context: Context) -> pb.DryRunJourneyResponse:
        tenant = tenant_id(context)
        days = request.days or 30
        if not 1 <= days <= 365:
            raise InvalidArgument("days must be 1..365", code="invalid_days", field="days")
        text = await self._definition(tenant, request)
        checked = grammar.validate(text)
        if checked.errors:
            raise InvalidArgument("the definition has errors; see ValidateJourney", code="invalid_definition",
                                  field="definition_json")
        definition = orjson.loads(text)
        entry, md = definition["entry"], tenant_metadata(tenant)
        if entry["type"] == "event":
            rules = {"event": entry["event"], "within_days": days, "count": {"op": "gte", "value": 1}}
            if entry.get("where"):
                rules["where"] = entry["where"]
            basis = f"people with {entry['event']} in the last {days} days"
        elif entry["type"] in ("segment", "schedule") and entry.get("segment_id"):
            segment = (await self._effects.identity.GetSegment(
                identity_pb2.GetSegmentRequest(segment_id=entry["segment_id"]), metadata=md)).segment
            rules, basis = orjson.loads(segment.rules_json), f"members of segment {segment.name or segment.id} now"
        else:
            return pb.DryRunJourneyResponse(basis=f"{entry['type']} entries cannot be estimated from past events")
        estimate = await self._effects.identity.EstimateSegment(
            identity_pb2.EstimateSegmentRequest(rules_json=orjson.dumps(rules).decode()), metadata=md)
        holdout = round(estimate.count * definition.get("holdout_percent", 0) / 100)
        return pb.DryRunJourneyResponse(estimated_entrants=estimate.count, total_profiles=estimate.total, basis=basis,
                                        estimated_holdout=holdout)
