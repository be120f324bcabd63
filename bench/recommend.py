"""recommend-svc figures: model refresh time on a realistic catalogue and feedback log, and serving
latency through the gateway at fixed request rates, each next to a raw ceiling of this machine.

    python -m bench.recommend [--users 100000] [--items 20000] [--interactions 2000000]
                              [--rates 250,500,1000] [--seconds 20]

1. Refresh: a tenant's catalogue goes in through the gateway (`POST /v1/catalog/items`, 1,000 per
   call; 8 sports with 5 leaf categories each, nutrition items are consumables, 1% activities), its
   feedback log straight into recommend's `interactions` table (COPY; zipf-like item popularity,
   each person leaning to a favourite category, views/clicks/carts/removals/purchases/dismisses,
   10% of the people anonymous). Then RetrainModel over gRPC (wait, long deadline): the run's
   finished_at - started_at and its counts. Raw ceiling: `recommend.domain.models` train_als and
   item_neighbors timed directly on the same matrix (and the load + matrix build apart).
2. Serving: `GET /v1/recommendations` through the gateway at each fixed rate (open loop, latency from
   each request's scheduled start: bench.loadgen), a mix of scenarios (home, product_page with a
   context item, cart with 1-3 items) and people (known profiles, anonymous people with a history,
   cold anonymous ids, nobody), some request keys repeated (cache hits; the share of distinct keys is
   reported). The Recommend RPC is driven the same way over gRPC (in-service latency, no gateway).
   Raw ceilings at the same rates: the gateway's `GET /healthz` (bare FastAPI round trip) and the
   service's gRPC health check (bare grpc.aio round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import asyncpg
import grpc
import httpx
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import create_tenant, percentile, write_section
from bench.loadgen import open_loop
from mcloud.recommend.v1 import recommend_pb2 as pb
from mcloud.recommend.v1 import recommend_pb2_grpc
from mcloud_cli.stack import start_stack
from mcloud_common.db import asyncpg_dsn
from mcloud_common.embedded import free_port
from mcloud_common.grpc_client import make_channel, tenant_metadata
from mcloud_common.metrics import bucket_percentile, histogram_buckets
from mcloud_common.timestamps import from_timestamp

SPORTS = ("running", "training", "outdoor", "cycling", "swimming", "tennis", "basketball", "football")
LEAVES = ("shoes", "apparel", "accessories", "equipment", "nutrition")
BRANDS = ("Nike", "Adidas", "Asics", "Puma", "Salomon", "Decathlon", "Li-Ning", "Anta")
# FeedbackKind number -> (share of the log, default weight of the service)
KINDS = {pb.FEEDBACK_KIND_VIEW: (0.74, 1.0), pb.FEEDBACK_KIND_CLICK: (0.05, 2.0),
         pb.FEEDBACK_KIND_ADD_TO_CART: (0.10, 3.0), pb.FEEDBACK_KIND_REMOVE_FROM_CART: (0.02, -1.0),
         pb.FEEDBACK_KIND_PURCHASE: (0.07, 5.0), pb.FEEDBACK_KIND_DISMISS: (0.02, -5.0)}
ANON_SHARE = 0.10
FAVOURITE_SHARE = 0.6
HISTORY_DAYS = 60


# ---- data -------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """A catalogue and a feedback log, as index arrays over `items` and `people`."""

    items: list[str]
    bodies: list[dict]                # catalogue items as the HTTP API takes them
    popularity: np.ndarray            # float64 [n_items], sums to 1
    people: list[str]                 # interactions.person: a profile id or "anon:" + anonymous id
    activity: np.ndarray              # float64 [n_people], sums to 1 (how often each person shows up)
    person: np.ndarray                # int32 [n_interactions]
    item: np.ndarray                  # int32 [n_interactions]
    kind: np.ndarray                  # int16 [n_interactions]
    weight: np.ndarray                # float32 [n_interactions]
    occurred: np.ndarray              # float64 epoch seconds [n_interactions]

    @property
    def profiles(self) -> list[int]:
        return [i for i, p in enumerate(self.people) if not p.startswith("anon:")]


def make_catalogue(rng: np.random.Generator, n_items: int) -> tuple[list[str], list[dict], np.ndarray, np.ndarray]:
    """Items (ids, HTTP bodies), each item's leaf category index and a zipf-like popularity."""
    leaves = [(s, leaf) for s in SPORTS for leaf in LEAVES]
    leaf_of = rng.integers(0, len(leaves), n_items)
    activity = rng.random(n_items) < 0.01
    now = datetime.now(UTC)
    ids, bodies = [], []
    for i in range(n_items):
        sport, leaf = leaves[leaf_of[i]]
        item_id = f"sku-{i:06d}"
        ids.append(item_id)
        if activity[i]:
            starts = now + timedelta(days=int(rng.integers(3, 90)))
            bodies.append({"id": item_id, "kind": "activity", "title": f"{sport.title()} meetup {i}",
                           "categories": ["activities", sport], "price": 0, "currency": "EUR", "in_stock": True,
                           "tags": [sport, "event"], "starts_at": starts.isoformat(),
                           "ends_at": (starts + timedelta(hours=4)).isoformat()})
            continue
        bodies.append({"id": item_id, "kind": "product", "title": f"{BRANDS[i % len(BRANDS)]} {sport} {leaf} {i}",
                       "categories": ["sports", sport, f"{sport}_{leaf}"], "brand": BRANDS[i % len(BRANDS)],
                       "price": round(float(rng.uniform(5, 300)), 2), "currency": "EUR",
                       "in_stock": bool(rng.random() < 0.95), "tags": [sport, leaf],
                       "replenish_after_days": 30 if leaf == "nutrition" else 0})
    ranks = rng.permutation(n_items) + 1
    popularity = 1.0 / ranks ** 0.8
    return ids, bodies, leaf_of, popularity / popularity.sum()


def make_dataset(n_people: int, n_items: int, n_interactions: int, seed: int = 6) -> Dataset:
    """People with lognormal activity, each with a favourite leaf category that takes 60% of their
    interactions (by popularity within it), the rest by global popularity."""
    rng = np.random.default_rng(seed)
    items, bodies, leaf_of, popularity = make_catalogue(rng, n_items)
    n_anon = int(n_people * ANON_SHARE)
    people = [str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i, version=4))
              for i in range(n_people - n_anon)] + [f"anon:a-{i}" for i in range(n_anon)]
    activity = rng.lognormal(0.0, 1.0, n_people)
    activity /= activity.sum()
    n_leaves = int(leaf_of.max()) + 1
    leaf_pop = np.bincount(leaf_of, weights=popularity, minlength=n_leaves)
    favourite = rng.choice(n_leaves, n_people, p=leaf_pop / leaf_pop.sum())

    person = rng.choice(n_people, n_interactions, p=activity).astype(np.int32)
    item = rng.choice(n_items, n_interactions, p=popularity).astype(np.int32)
    in_favourite = rng.random(n_interactions) < FAVOURITE_SHARE
    fav_of_row = favourite[person]
    for leaf in range(n_leaves):
        rows = np.flatnonzero(in_favourite & (fav_of_row == leaf))
        members = np.flatnonzero(leaf_of == leaf)
        if len(rows) and len(members):
            p = popularity[members] / popularity[members].sum()
            item[rows] = members[rng.choice(len(members), len(rows), p=p)]
    codes = np.array(list(KINDS), dtype=np.int16)
    shares = np.array([s for s, _ in KINDS.values()])
    kind = codes[rng.choice(len(codes), n_interactions, p=shares / shares.sum())]
    lut = np.zeros(max(KINDS) + 1, dtype=np.float32)
    for code, (_, w) in KINDS.items():
        lut[code] = w
    weight = lut[kind]
    occurred = time.time() - rng.uniform(60, HISTORY_DAYS * 86400, n_interactions)
    return Dataset(items=items, bodies=bodies, popularity=popularity, people=people, activity=activity,
                   person=person, item=item, kind=kind, weight=weight, occurred=occurred)


async def seed_catalogue(url: str, secret: str, bodies: list[dict], batch: int = 1000) -> dict:
    """POST the catalogue through the gateway, `batch` items per call, one call at a time."""
    headers = {"authorization": f"Bearer {secret}"}
    latencies = []
    upserted = 0
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        start = time.perf_counter()
        for i in range(0, len(bodies), batch):
            t = time.perf_counter()
            r = await client.post("/v1/catalog/items", json={"items": bodies[i:i + batch]}, headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"POST /v1/catalog/items -> {r.status_code}: {r.text[:500]}")
            latencies.append(time.perf_counter() - t)
            upserted += r.json()["upserted"]
        seconds = time.perf_counter() - start
    return {"items": upserted, "seconds": seconds, "items_per_s": upserted / seconds,
            "call_p50_ms": percentile(latencies, 50) * 1000, "call_max_ms": max(latencies) * 1000}


async def copy_interactions(db_url: str, tenant: str, ds: Dataset, chunk: int = 200_000) -> dict:
    """COPY the feedback log into recommend's interactions table (as RecordFeedback would leave it)."""
    tenant_id = uuid.UUID(tenant)
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    columns = ["tenant_id", "event_id", "person", "item_id", "kind", "weight", "quantity", "recommendation_id",
               "occurred_at"]
    try:
        start = time.perf_counter()
        for lo in range(0, len(ds.person), chunk):
            hi = min(lo + chunk, len(ds.person))
            records = [(tenant_id, f"bench-{i}", ds.people[p], ds.items[it], int(k), float(w), 1, "",
                        datetime.fromtimestamp(ts, UTC))
                       for i, p, it, k, w, ts in zip(range(lo, hi), ds.person[lo:hi].tolist(), ds.item[lo:hi].tolist(),
                                                     ds.kind[lo:hi].tolist(), ds.weight[lo:hi].tolist(),
                                                     ds.occurred[lo:hi].tolist(), strict=True)]
            await conn.copy_records_to_table("interactions", columns=columns, records=records)
        seconds = time.perf_counter() - start
        await conn.execute("ANALYZE interactions")
    finally:
        await conn.close()
    return {"rows": len(ds.person), "seconds": seconds, "rows_per_s": len(ds.person) / seconds}


# ---- refresh ----------------------------------------------------------------------------------------


def run_dict(run: pb.TrainingRun) -> dict:
    started = from_timestamp(run.started_at) if run.HasField("started_at") else None
    finished = from_timestamp(run.finished_at) if run.HasField("finished_at") else None
    return {"id": run.id, "status": pb.TrainingStatus.Name(run.status), "item_count": run.item_count,
            "interaction_count": run.interaction_count, "metrics": {m.name: m.value for m in run.metrics},
            "error": run.error, "started_at": started, "finished_at": finished,
            "seconds": (finished - started).total_seconds() if started and finished else None}


async def retrain(stub, md) -> dict:
    """RetrainModel(wait) with a long deadline; if it returns unfinished, poll the run until it is."""
    t = time.perf_counter()
    run = (await stub.RetrainModel(pb.RetrainModelRequest(wait=True, idempotency_key=f"bench-{uuid.uuid4()}"),
                                   metadata=md, timeout=7200)).run
    call_seconds = time.perf_counter() - t
    while run.status in (pb.TRAINING_STATUS_QUEUED, pb.TRAINING_STATUS_RUNNING):
        await asyncio.sleep(1)
        run = (await stub.GetTrainingRun(pb.GetTrainingRunRequest(run_id=run.id), metadata=md)).run
    return {**run_dict(run), "call_seconds": call_seconds, "until_finished_seconds": time.perf_counter() - t}


async def raw_refresh(db_url: str, tenant: str, ds: Dataset) -> dict:
    """The refresh's parts timed directly on the same data: the service's aggregate query of the log
    (asyncpg), the matrix build, ALS, item neighbours and the npz (recommend.domain.models with the
    service's default settings), one after the other on an otherwise idle stack."""
    from recommend.domain import models
    from recommend.settings import RecommendSettings
    from recommend.training import _INTERACTIONS

    s = RecommendSettings.model_construct()  # the defaults, without the connection settings a service needs
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        t = time.perf_counter()
        rows = await conn.fetch(_INTERACTIONS, uuid.UUID(tenant), datetime.now(UTC) - timedelta(days=365),
                                pb.FEEDBACK_KIND_DISMISS)
        load = time.perf_counter() - t
    finally:
        await conn.close()
    t = time.perf_counter()
    matrix = models.Matrix.build([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], item_ids=ds.items)
    build = time.perf_counter() - t
    n_rows = len(rows)
    del rows
    t = time.perf_counter()
    factors = models.train_als(matrix.csr, factors=s.als_factors, regularization=s.als_regularization,
                               alpha=s.als_alpha, iterations=s.als_iterations)
    als = time.perf_counter() - t
    t = time.perf_counter()
    neighbors = models.item_neighbors(matrix.csr, k=s.neighbors)
    knn = time.perf_counter() - t
    t = time.perf_counter()
    blob = models.dumps(matrix.items, neighbors, factors)
    dump = time.perf_counter() - t
    return {"load_seconds": load, "rows": n_rows, "build_seconds": build, "als_seconds": als,
            "neighbors_seconds": knn, "dumps_seconds": dump, "blob_mb": len(blob) / 1e6,
            "matrix": {"people": matrix.csr.shape[0], "items": matrix.csr.shape[1], "nnz": int(matrix.csr.nnz)},
            "factors": s.als_factors, "iterations": s.als_iterations, "neighbors": s.neighbors}


# ---- serving ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """One recommendation request, rendered both as a gateway path and as a RecommendRequest."""

    scenario: str
    profile: str = ""
    anonymous: str = ""
    context: tuple[str, ...] = ()

    def path(self) -> str:
        q: list[tuple[str, str]] = [("scenario", self.scenario)]
        if self.profile:
            q.append(("profile", self.profile))
        if self.anonymous:
            q.append(("anonymous_id", self.anonymous))
        if self.scenario == "product_page":
            q.append(("context_item", self.context[0]))
        elif self.scenario == "cart":
            q += [("context_items", c) for c in self.context]
        q += [("count", "10"), ("include_items", "true")]
        return "/v1/recommendations?" + urlencode(q)

    def request(self) -> pb.RecommendRequest:
        scenario = {"home": pb.SCENARIO_HOME, "product_page": pb.SCENARIO_PRODUCT_PAGE, "cart": pb.SCENARIO_CART}
        return pb.RecommendRequest(
            scenario=scenario[self.scenario], profile_id=self.profile, anonymous_id=self.anonymous,
            context_item_id=self.context[0] if self.scenario == "product_page" else "",
            context_item_ids=list(self.context) if self.scenario == "cart" else [], count=10, include_items=True)


PEOPLE_MIX = (("known", 0.60), ("anonymous", 0.10), ("cold", 0.25), ("nobody", 0.05))
SCENARIO_MIX = (("home", 0.45), ("product_page", 0.40), ("cart", 0.15))
SATURATED = 0.6  # achieved below this share of the offered rate: not measured at higher rates
REPEAT_SHARE = 0.30  # a request repeats one of the last 500 (page reloads, the same product page)


def make_asks(ds: Dataset, n: int, seed: int) -> tuple[list[Ask], dict]:
    """`n` requests of the mix; returns them and the realised mix (people kinds, scenarios, distinct keys)."""
    rng = np.random.default_rng(seed)
    profiles = np.array(ds.profiles)
    anons = np.array([i for i, p in enumerate(ds.people) if p.startswith("anon:")])
    p_prof = ds.activity[profiles] / ds.activity[profiles].sum()
    p_anon = ds.activity[anons] / ds.activity[anons].sum() if len(anons) else None
    who = rng.choice([w for w, _ in PEOPLE_MIX], n, p=[s for _, s in PEOPLE_MIX])
    scen = rng.choice([s for s, _ in SCENARIO_MIX], n, p=[s for _, s in SCENARIO_MIX])
    ctx = rng.choice(len(ds.items), (n, 3), p=ds.popularity)
    n_ctx = rng.integers(1, 4, n)
    prof = profiles[rng.choice(len(profiles), n, p=p_prof)]
    anon = anons[rng.choice(len(anons), n, p=p_anon)] if len(anons) else prof
    repeat = rng.random(n) < REPEAT_SHARE
    back = rng.integers(1, 501, n)
    asks: list[Ask] = []
    kinds: Counter[str] = Counter()
    for i in range(n):
        if repeat[i] and i >= back[i]:
            asks.append(asks[i - back[i]])
            continue
        kinds[str(who[i])] += 1
        profile = anonymous = ""
        if who[i] == "known":
            profile = ds.people[prof[i]]
        elif who[i] == "anonymous" and len(anons):
            anonymous = ds.people[anon[i]].removeprefix("anon:")
        elif who[i] == "cold":
            anonymous = f"cold-{seed}-{i}"
        context = tuple(ds.items[c] for c in ctx[i, :n_ctx[i] if scen[i] == "cart" else 1])
        asks.append(Ask(scenario=str(scen[i]), profile=profile, anonymous=anonymous, context=context))
    mix = {"distinct_share": len(set(asks)) / n, "people": dict(kinds), "scenarios": dict(Counter(a.scenario
                                                                                                for a in asks))}
    return asks, mix


async def grpc_open_loop(call, requests: list, *, rate: float, concurrency: int = 32) -> dict:
    """Issue `call(request)` for each request at `rate` per second from `concurrency` workers; latency
    from each request's scheduled start (as bench.loadgen does for HTTP)."""
    queue: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    codes: Counter[str] = Counter()

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            due, request = item
            try:
                await call(request)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as e:
                codes[e.code().name] += 1
            latencies.append(time.perf_counter() - due)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    start = time.perf_counter() + 0.05
    for i, request in enumerate(requests):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((start + i / rate, request))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    return {"requests": len(requests), "rate": rate, "achieved_rps": len(requests) / elapsed, "codes": dict(codes),
            "errors": sum(n for c, n in codes.items() if c != "OK"), "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "max_ms": max(latencies) * 1000}


async def sample_answers(stub, md, asks: list[Ask]) -> dict:
    """What the mix gets back (recommenders, cold starts, items per answer) and each kind of request's
    latency when asked alone (one at a time, no load)."""
    recommenders: Counter[str] = Counter()
    cold = empty = total = 0
    errors: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    alone: dict[str, list[float]] = {}
    for ask in asks:
        who = "known" if ask.profile else "anonymous" if ask.anonymous and not ask.anonymous.startswith(
            "cold-") else "cold" if ask.anonymous else "nobody"
        t = time.perf_counter()
        try:
            r = await stub.Recommend(ask.request(), metadata=md)
        except grpc.aio.AioRpcError as e:
            errors[f"{e.code().name}: {e.details()[:120]}"] += 1
            continue
        alone.setdefault(f"{who}/{ask.scenario}", []).append((time.perf_counter() - t) * 1000)
        by_kind.setdefault(f"{who}/{ask.scenario}", Counter()).update(i.recommender for i in r.items)
        recommenders.update(i.recommender for i in r.items)
        cold += r.cold_start
        empty += not r.items
        total += len(r.items)
    answered = len(asks) - sum(errors.values())
    return {"asked": len(asks), "answered": answered, "cold_start": cold, "empty": empty,
            "items_per_answer": total / max(answered, 1), "recommenders": dict(recommenders),
            "by_person_scenario": {k: dict(v) for k, v in sorted(by_kind.items())},
            "alone_ms": {k: {"n": len(v), "p50": percentile(v, 50), "max": max(v)} for k, v in sorted(alone.items())},
            "errors": dict(errors)}


class CpuMeter:
    """CPU seconds used by the stack's processes (recommend, gateway, PostgreSQL with its backends,
    Valkey) and by this load generator, read from /proc: where each request's time goes."""

    def __init__(self, stack) -> None:
        self.stack = stack
        self.tick = os.sysconf("SC_CLK_TCK")

    def _stat(self, pid: int, children: bool = False) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        # after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
        used = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
        return used / self.tick

    def _postgres(self) -> float:
        try:
            master = int((self.stack.home / "postgres" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        total = self._stat(master, children=True)  # exited backends count through cutime
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if int(Path(proc, "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                        total += self._stat(int(proc.name))
                except (OSError, IndexError, ValueError):
                    continue
        return total

    def snapshot(self) -> dict[str, float]:
        out = {name: self._stat(pid) if (pid := self.stack.pid(name)) else 0.0 for name in ("recommend", "gateway")}
        out["postgres"] = self._postgres()
        try:
            out["valkey"] = self._stat(int((self.stack.home / "valkey" / "valkey.pid").read_text().strip()))
        except (OSError, ValueError):
            out["valkey"] = 0.0
        out["load generator"] = time.process_time()
        return out

    async def measure(self, coro) -> tuple[dict, dict[str, float]]:
        """Run `coro`; its result and the CPU seconds each process used meanwhile."""
        before = self.snapshot()
        result = await coro
        after = self.snapshot()
        return result, {k: round(after[k] - before[k], 3) for k in after}

    async def settle(self, limit: float = 120.0) -> float:
        """Wait until the stack is idle (under 0.1 core over half a second): work deferred by a load
        (served lists flushed, events relayed) must not land on the next measurement. Seconds waited."""
        start = time.perf_counter()
        while time.perf_counter() - start < limit:
            before = self.snapshot()
            await asyncio.sleep(0.5)
            after = self.snapshot()
            if sum(after[k] - before[k] for k in after if k != "load generator") < 0.05:
                break
        return time.perf_counter() - start


RECOMMEND_RPC = "/mcloud.recommend.v1.RecommendService/Recommend"


class InService:
    """Recommend's own latency histogram (its /metrics endpoint): time inside the service per Recommend call,
    from the handler's start to its answer, without the transport or the load generator."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    async def buckets(self) -> list[tuple[float, float]]:
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(self.url)).text
        return histogram_buckets(text, "mcloud_rpc_server_duration_seconds", {"method": RECOMMEND_RPC})

    async def measure(self, coro) -> tuple[dict, dict]:
        before = await self.buckets()
        result = await coro
        after = await self.buckets()
        ms = {f"p{q}_ms": (v * 1000 if (v := bucket_percentile(before, after, q)) is not None else None)
              for q in (50, 90, 99, 99.9)}
        ms["calls"] = (after[-1][1] - dict(before).get(after[-1][0], 0.0)) if after else 0
        return result, ms


async def serving(stack, keys: dict, stub, health, md, ds: Dataset, rates: list[float], seconds: float,
                  inside: InService) -> dict:
    headers = {"authorization": f"Bearer {keys['secret_key']}"}
    url = stack.gateway_url
    cpu = CpuMeter(stack)
    warm, _ = make_asks(ds, 600, seed=999)
    await cpu.settle()
    first = Ask("home", profile=ds.people[ds.profiles[0]])
    t = time.perf_counter()
    await stub.Recommend(first.request(), metadata=md, timeout=300)  # the tenant's state loads on first use
    first_ms = (time.perf_counter() - t) * 1000
    sample = await sample_answers(stub, md, warm[:300])
    sample["first_request_ms"] = first_ms
    await open_loop(url, [a.path() for a in warm], rate=min(rates), headers=headers)  # pools, caches of the model
    hreq = health_pb2.HealthCheckRequest(service="")
    results = []
    saturated: dict[str, float] = {}  # target -> the rate it fell behind at: higher rates would only queue more
    for n, rate in enumerate(rates):
        count = int(rate * seconds)
        await cpu.settle()
        bare, bare_cpu = await cpu.measure(open_loop(url, ["/healthz"] * count, rate=rate, headers=headers))
        bare["gateway_cpu_ms"] = bare_cpu["gateway"] * 1000 / count
        await cpu.settle()
        bare_grpc = await grpc_open_loop(lambda r: health.Check(r, metadata=md), [hreq] * count, rate=rate)
        row: dict = {"rate": rate, "healthz": bare, "grpc_health": bare_grpc}
        asks, row["mix"] = make_asks(ds, count, seed=100 + n)
        if "gateway" not in saturated:
            await cpu.settle()
            (gw, row["gateway_cpu_s"]), gw["in_service"] = await inside.measure(cpu.measure(open_loop(
                url, [a.path() for a in asks], rate=rate, headers=headers)))
            gw["errors"] = sum(c for s, c in gw["statuses"].items() if s != 200)
            gw["settle_seconds"] = await cpu.settle()
            row["gateway"] = gw
            if gw["achieved_rps"] < SATURATED * rate:
                saturated["gateway"] = rate
        asks2, row["grpc_mix"] = make_asks(ds, count, seed=200 + n)  # fresh keys: not cached by the gateway run
        if "grpc" not in saturated:
            (direct, row["grpc_cpu_s"]), direct["in_service"] = await inside.measure(cpu.measure(grpc_open_loop(
                lambda r: stub.Recommend(r, metadata=md), [a.request() for a in asks2], rate=rate)))
            direct["settle_seconds"] = await cpu.settle()
            row["grpc"] = direct
            if direct["achieved_rps"] < SATURATED * rate:
                saturated["grpc"] = rate
        results.append(row)
        print(f"rate {rate:.0f}: " + "; ".join(
            f"{k} p50 {v['p50_ms']:.1f} p99 {v['p99_ms']:.1f} ({v['achieved_rps']:.0f}/s)"
            + (f" in service {v['in_service']}" if "in_service" in v else "")
            for k in ("gateway", "grpc", "healthz", "grpc_health") if (v := row.get(k))), flush=True)
    return {"sample": sample, "rates": results, "saturated_at": saturated}


# ---- main -------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict:
    t = time.perf_counter()
    ds = make_dataset(args.users, args.items, args.interactions)
    generate = time.perf_counter() - t
    print(f"data generated in {generate:.1f} s", flush=True)
    home = Path(tempfile.mkdtemp(prefix="mcloud-bench-"))
    # one key drives the whole load: lift its per-key rate limit (200/s by default) for the measurement
    metrics_port = free_port()
    unlimited = {"GATEWAY_RATE_LIMIT_PER_SECOND": "1000000", "GATEWAY_RATE_LIMIT_BURST": "1000000",
                 "RECOMMEND_METRICS_PORT": str(metrics_port)}
    with start_stack(home / "mcloud", env=unlimited) as stack:
        keys = create_tenant(stack.home, f"bench-{uuid.uuid4().hex[:6]}")
        tenant = keys["tenant_id"]
        md = tenant_metadata(tenant)
        channel = make_channel(stack.grpc_address("recommend"), default_timeout=30)
        stub = recommend_pb2_grpc.RecommendServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        db_url = stack.database_url("recommend")
        catalogue = await seed_catalogue(stack.gateway_url, keys["secret_key"], ds.bodies)
        print(f"catalogue: {catalogue}", flush=True)
        copied = await copy_interactions(db_url, tenant, ds)
        print(f"interactions: {copied}", flush=True)
        run = await retrain(stub, md)
        print(f"retrain: {run}", flush=True)
        serve = await serving(stack, keys, stub, health, md, ds, args.rates, args.seconds, InService(metrics_port))
        raw = await raw_refresh(db_url, tenant, ds)
        print(f"raw refresh: {raw}", flush=True)
        await channel.close()
    return {"params": {"users": args.users, "items": args.items, "interactions": args.interactions,
                       "rates": args.rates, "seconds": args.seconds, "generate_seconds": generate},
            "catalogue": catalogue, "copy": copied, "run": run, "raw": raw, "serving": serve}


def markdown(r: dict, command: str) -> str:
    p, c, cp, run, raw, sv = r["params"], r["catalogue"], r["copy"], r["run"], r["raw"], r["serving"]
    core = raw["als_seconds"] + raw["neighbors_seconds"]
    parts = raw["load_seconds"] + raw["build_seconds"] + core + raw["dumps_seconds"]
    run_s = run["seconds"] or float("nan")
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(run["metrics"].items())) or "none"
    m = raw["matrix"]
    error = f", error: {run['error']}" if run["error"] else ""
    lines = [f"""
recommend-svc (stack started as `mcloud up` starts it, scheduled jobs on; the load generator runs on
the same 2-core machine). {p['users']:,} people ({ANON_SHARE:.0%} anonymous), {p['items']:,} items,
{p['interactions']:,} interactions (zipf-like popularity, {FAVOURITE_SHARE:.0%} in each person's favourite
category, views/clicks/carts/removals/purchases/dismisses over {HISTORY_DAYS} days).

### Model refresh

| measure | value |
|---|---|
| catalogue through the gateway (`POST /v1/catalog/items`, 1,000 per call) | {c['items']:,} items in \
{c['seconds']:.1f} s ({c['items_per_s']:,.0f} items/s, call p50 {c['call_p50_ms']:.0f} ms) |
| feedback log COPY into `interactions` (setup, not the service) | {cp['rows']:,} rows in {cp['seconds']:.1f} s \
({cp['rows_per_s']:,.0f} rows/s) |
| **RetrainModel run (finished_at - started_at)** | **{run_s:.1f} s**, {run['status']}, \
{run['item_count']:,} items, {run['interaction_count']:,} interactions{error} |
| RetrainModel call, wall time (wait=true) | {run['call_seconds']:.1f} s |
| offline metrics of the run | {metrics} |
| raw: the service's query of the log (sum per person x item, asyncpg) | {raw['load_seconds']:.1f} s \
({raw['rows']:,} rows) |
| raw: `Matrix.build` | {raw['build_seconds']:.1f} s ({m['people']:,} x {m['items']:,}, {m['nnz']:,} cells) |
| raw: `train_als` ({raw['factors']} factors, {raw['iterations']} iterations) | {raw['als_seconds']:.1f} s |
| raw: `item_neighbors` (k={raw['neighbors']}) | {raw['neighbors_seconds']:.1f} s |
| raw: `dumps` (npz) | {raw['dumps_seconds']:.1f} s ({raw['blob_mb']:.1f} MB) |
| **ratio run / (train_als + item_neighbors)**, run / all raw parts | **{run_s / core:.2f}**, \
{run_s / parts:.2f} |

### Serving

`GET /v1/recommendations` (count=10, include_items=true) through the gateway, open loop, latency from
each request's scheduled start; people: {', '.join(f'{k} {s:.0%}' for k, s in PEOPLE_MIX)}
(known = profile with history, anonymous = anonymous id with history, cold = unseen anonymous id);
scenarios: {', '.join(f'{k} {s:.0%}' for k, s in SCENARIO_MIX)} (product_page with a context item,
cart with 1-3); {REPEAT_SHARE:.0%} of requests repeat one of the last 500. The Recommend RPC driven the
same way directly over gRPC (fresh keys). Ceilings at the same rates: gateway `GET /healthz`, gRPC health check.

`in service` is recommend's own histogram of each Recommend call, from the handler's start to its answer
(its /metrics endpoint; bucket upper bounds, exact to 0.5-1 ms below 10 ms): what the service spends, without
the transport and the load generator sharing the cores.

| offered req/s | distinct keys | gateway answered req/s | gateway p50 / p99 ms \
| in service p50 / p99 ms (gateway run) | errors | gRPC answered req/s | Recommend gRPC p50 / p99 ms \
| in service p50 / p99 ms (gRPC run) \
| `/healthz` p50 / p99 ms | gRPC health p50 / p99 ms | **p99 ratio gateway / healthz** | p99 ratio gRPC / health |
|---|---|---|---|---|---|---|---|---|---|---|---|---|"""]
    def busy(seconds: float) -> str:
        return "idle within 0.5 s" if seconds < 0.75 else f"{seconds:.1f} s"

    def lat(v: dict | None) -> str:
        return f"{v['p50_ms']:,.1f} / **{v['p99_ms']:,.1f}**" if v else "not run (saturated below)"

    def inside(v: dict | None) -> str:
        m = (v or {}).get("in_service") or {}
        if m.get("p99_ms") is None:
            return "-"
        return f"≤ {m['p50_ms']:g} / **≤ {m['p99_ms']:g}**"

    for x in sv["rates"]:
        g, d, h, hg = x.get("gateway"), x.get("grpc"), x["healthz"], x["grpc_health"]
        rps = [f"{v['achieved_rps']:.0f}" if v else "-" for v in (g, d)]
        ratios = [f"**{v['p99_ms'] / c['p99_ms']:,.1f}**" if v else "-" for v, c in ((g, h), (d, hg))]
        lines.append(
            f"| {x['rate']:.0f} | {x['mix']['distinct_share']:.0%} | {rps[0]} | {lat(g)} | {inside(g)} "
            f"| {g['errors'] if g else '-'} | {rps[1]} | {lat(d)} | {inside(d)} "
            f"| {h['p50_ms']:.1f} / {h['p99_ms']:.1f} | {hg['p50_ms']:.1f} / {hg['p99_ms']:.1f} "
            f"| {ratios[0]} | {ratios[1]} |")
    for target, rate in sv["saturated_at"].items():
        best = max(x[target]["achieved_rps"] for x in sv["rates"] if target in x)
        lines.append(f"\n{'Gateway' if target == 'gateway' else 'Direct gRPC'}: fell behind at {rate:.0f} req/s "
                     f"offered (at most {best:.0f} req/s answered); higher rates not run, they would only queue.")
    lines.append("""
CPU per request during the load (ms of CPU per request answered, from /proc; 2 cores = 2,000 ms per
second), and how long the stack kept working after the load ended (deferred work: served lists flushed,
events relayed):

| offered req/s | via | recommend | gateway | PostgreSQL | Valkey | load generator | total | busy after the load |
|---|---|---|---|---|---|---|---|---|""")
    for x in sv["rates"]:
        for via, key, res in (("gateway", "gateway_cpu_s", x.get("gateway")), ("gRPC", "grpc_cpu_s", x.get("grpc"))):
            if res is None:
                continue
            per = {k: v * 1000 / res["requests"] for k, v in x[key].items()}
            lines.append(f"| {x['rate']:.0f} | {via} | {per['recommend']:.1f} | {per['gateway']:.1f} | "
                         f"{per['postgres']:.1f} | {per['valkey']:.1f} | {per['load generator']:.1f} | "
                         f"{sum(per.values()):.1f} | {busy(res['settle_seconds'])} |")
        lines.append(f"| {x['rate']:.0f} | `/healthz` (ceiling) | | {x['healthz']['gateway_cpu_ms']:.1f} | | | | | |")
    s = sv["sample"]
    alone = ", ".join(f"{k} {v['p50']:.1f}" for k, v in s["alone_ms"].items())
    rec = ", ".join(f"{k} {v:,}" for k, v in sorted(s["recommenders"].items(), key=lambda kv: -kv[1]))
    lines.append(f"""
The tenant's first request (its serving state loaded: catalogue, popularity over the log, model): \
{s['first_request_ms']:,.0f} ms. What the mix gets back (a sample of {s['asked']} requests before the load, \
one at a time): {s['items_per_answer']:.1f} items per \
answer, {s['cold_start']} cold starts, {s['empty']} empty; items by recommender: {rec or 'none'}\
{'; errors: ' + str(s['errors']) if s['errors'] else ''}. Latency of each kind asked alone over gRPC \
(p50 ms, person/scenario): {alone}.

Command: `{command}`
""")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[250.0, 500.0, 1000.0])
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    r = asyncio.run(main_async(args))
    command = (f"python -m bench.recommend --users {args.users} --items {args.items} --interactions "
               f"{args.interactions} --rates {','.join(f'{x:g}' for x in args.rates)} --seconds {args.seconds:g}")
    table = markdown(r, command)
    print(table)
    write_section("recommend", table, r)


if __name__ == "__main__":
    main()
