"""Serving: a tenant's in-memory state (catalogue, popularity, trending, the trained model remapped onto
the catalogue) and the recommenders that rank over it for one request. No I/O here: the service reads
the person's state and hands it in.

Recommenders (the `recommender` of each item): replenishment, cross_category, personalized,
item_to_item (session for anonymous visitors), interest_activity, trending, popular. A scenario is a
plan of quotas over them; what a plan leaves open is filled from the next ones and finally by popular."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from mcloud.recommend.v1 import recommend_pb2 as pb
from recommend.domain import models
from recommend.domain.catalog import Catalog
from recommend.domain.config import Config
from recommend.repo.feedback import PersonState

SCENARIO_NAMES = {pb.SCENARIO_UNSPECIFIED: "home", pb.SCENARIO_HOME: "home", pb.SCENARIO_PRODUCT_PAGE: "product_page",
                  pb.SCENARIO_CART: "cart", pb.SCENARIO_EMAIL: "email", pb.SCENARIO_STORE_TABLET: "store_tablet"}
_NONE = np.zeros(0, dtype=np.int32)
SEEDS = 10  # latest distinct items a person's similar items start from
ORDER_SECONDS = 5.0
CATEGORY_HEAD = 500
CONTENT_WEIGHT = 0.35  # content similarity next to co-occurrence (cosine, both in 0..1)
CROSS_CATEGORIES = 3
SIMILAR_KEPT = 100  # similar items kept per item (co-occurrence and content together)


@dataclass
class TenantState:
    catalog: Catalog
    config: Config
    popular: np.ndarray  # float32 [n]: distinct people over 30 days
    trending: np.ndarray  # float32 [n]: time-decayed weight
    neighbors: models.Neighbors | None = None  # remapped onto the catalogue
    factors: models.Factors | None = None
    model_run: str = ""
    config_stamp: str = ""
    popularity_stamp: int = 0
    # each item's similar items (co-occurrence + content), built once per catalogue and model
    similar: models.Neighbors | None = None
    popular_norm: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        top = float(self.popular.max()) if len(self.popular) else 0.0
        self.popular_norm = self.popular / top if top > 0 else np.zeros(len(self.catalog), dtype=np.float32)
        self._orders: dict[str, tuple[float, np.ndarray]] = {}
        self._heads: dict[str, np.ndarray] = {}
        self.fed_at = 0.0

    def category_head(self, category: str) -> np.ndarray:
        """The category's most popular CATEGORY_HEAD items (all of a smaller category): the content
        candidates of a seed in it, so a large category costs no more than a small one."""
        got = self._heads.get(category)
        if got is None:
            members = self.catalog.by_category.get(category, _NONE)
            if len(members) > CATEGORY_HEAD:
                members = members[np.argsort(-self.popular[members], kind="stable")[:CATEGORY_HEAD]]
            self._heads[category] = got = members
        return got

    def similar_items(self) -> models.Neighbors:
        if self.similar is None:
            self.similar = similar_items(self.catalog, self.neighbors, self.category_head)
        return self.similar

    def order(self, name: str) -> np.ndarray:
        """Items by popularity or trending, best first (ties: lower index); re-sorted at most every few
        seconds after feedback moved the scores."""
        got = self._orders.get(name)
        now = time.monotonic()
        if got is None or (self.fed_at > got[0] and now - got[0] >= ORDER_SECONDS):
            scores = self.popular if name == "popular" else self.trending
            got = (now, np.lexsort((np.arange(len(scores)), -scores)))
            self._orders[name] = got
        return got[1]

    @property
    def cache_stamp(self) -> str:
        return f"{self.catalog.version}.{self.model_run}.{self.config_stamp}.{self.popularity_stamp}"


def similar_items(catalog: Catalog, nb: models.Neighbors | None, head: Callable[[str], np.ndarray], *,
                  keep: int = SIMILAR_KEPT) -> models.Neighbors:
    """Every item's `keep` most similar items, best first: co-occurrence neighbours (when a model exists) plus
    CONTENT_WEIGHT x content similarity, over the head of the item's category (its CATEGORY_HEAD most popular
    items) and its neighbours. Built set-based, one sparse product per category, when the catalogue or the
    model changes, so serving a person with ten seeds is ten row lookups."""
    n = len(catalog)
    out_idx = np.full((n, keep), -1, dtype=np.int32)
    out_sc = np.zeros((n, keep), dtype=np.float32)
    features = catalog.features
    for leaf, code in zip(catalog.leaf_names, range(len(catalog.leaf_names)), strict=True):
        members = np.flatnonzero(catalog.leaf_code == code)
        if not len(members):
            continue
        cand = np.unique(head(leaf)) if leaf else members
        scores = np.asarray((features[members] @ features[cand].T).todense(), dtype=np.float32) * CONTENT_WEIGHT
        idx = np.broadcast_to(cand.astype(np.int32), scores.shape)
        if nb is not None:
            near, near_sc = nb.indices[members], nb.scores[members].copy()
            valid = near >= 0
            pos = np.searchsorted(cand, np.maximum(near, 0))
            inside = valid & (pos < len(cand)) & (cand[np.minimum(pos, len(cand) - 1)] == near)
            rows = np.broadcast_to(np.arange(len(members))[:, None], near.shape)
            np.add.at(scores, (rows[inside], pos[inside]), near_sc[inside])  # in the head: added there
            outside = valid & ~inside
            if outside.any():  # elsewhere: co-occurrence plus their content similarity, as extra columns
                a = features[np.repeat(members, near.shape[1])[outside.ravel()]]
                b = features[near[outside]]
                near_sc[outside] += np.asarray(a.multiply(b).sum(axis=1)).ravel().astype(np.float32) * CONTENT_WEIGHT
            near_sc[~outside] = 0
            scores = np.hstack([scores, near_sc])
            idx = np.hstack([idx, np.where(outside, near, -1).astype(np.int32)])
        own = np.searchsorted(cand, members).clip(max=len(cand) - 1)
        itself = cand[own] == members  # an item is not its own similar item
        scores[np.flatnonzero(itself), own[itself]] = 0
        k = min(keep, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if scores.shape[1] > k else np.broadcast_to(
            np.arange(scores.shape[1]), (len(members), scores.shape[1]))
        top_sc = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_sc, axis=1, kind="stable")
        top, top_sc = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_sc, order, axis=1)
        chosen = np.take_along_axis(idx, top, axis=1)
        chosen = np.where(top_sc > 0, chosen, -1)
        out_idx[members, :k] = chosen
        out_sc[members, :k] = np.where(chosen >= 0, top_sc, 0)
    return models.Neighbors(indices=out_idx, scores=out_sc)


def remap(model_items: Sequence[str], nb: models.Neighbors | None, factors: models.Factors | None,
          catalog: Catalog) -> tuple[models.Neighbors | None, models.Factors | None]:
    """The model's arrays in catalogue order (items the model never saw get no neighbours and zero
    factors; neighbours no longer in the catalogue are dropped)."""
    n = len(catalog)
    pos = np.array([catalog.index.get(i, -1) for i in model_items], dtype=np.int64)
    present = pos >= 0
    out_nb = out_f = None
    if nb is not None and len(model_items):
        mapped = np.where(nb.indices >= 0, pos[np.maximum(nb.indices, 0)], -1)
        scores = np.where(mapped >= 0, nb.scores, 0).astype(np.float32)
        idx = np.full((n, nb.indices.shape[1]), -1, dtype=np.int32)
        sc = np.zeros((n, nb.indices.shape[1]), dtype=np.float32)
        idx[pos[present]] = mapped[present]
        sc[pos[present]] = scores[present]
        out_nb = models.Neighbors(indices=idx, scores=sc)
    if factors is not None and len(model_items):
        f = np.zeros((n, factors.item_factors.shape[1]), dtype=np.float32)
        f[pos[present]] = factors.item_factors[present]
        out_f = models.Factors(item_factors=f, yty=f.T.astype(np.float64) @ f.astype(np.float64),
                               regularization=factors.regularization, alpha=factors.alpha)
    return out_nb, out_f


@dataclass
class Pick:
    idx: int
    score: float
    recommender: str
    explanation: str


@dataclass
class Result:
    picks: list[Pick]
    intent_locked: bool
    cold_start: bool


@dataclass
class Seeds:
    """A person's positive items (distinct, newest first) and weights."""

    idx: np.ndarray
    weights: np.ndarray

    @classmethod
    def of(cls, state: TenantState, person: PersonState | None, now: datetime) -> Seeds:
        if person is None:
            return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        config, index = state.config, state.catalog.index
        total: dict[int, float] = {}
        order: list[int] = []
        for s in person.history:
            i = index.get(s.item_id)
            if i is None:
                continue
            if i not in total:
                order.append(i)
                total[i] = 0.0
            age_days = max((now - s.at).total_seconds(), 0) / 86400
            total[i] += (s.weight if s.weight else config.weight(s.kind)) * 0.5 ** (age_days / 30)
        keep = [i for i in order if total[i] > 0]
        return cls(np.array(keep, dtype=np.int64), np.array([total[i] for i in keep], dtype=np.float32))


def _ranked(scores: np.ndarray, allowed: np.ndarray, limit: int) -> list[tuple[int, float]]:
    """The `limit` best allowed items with a positive score, best first (ties: lower index)."""
    cand = np.flatnonzero(allowed & (scores > 0))
    if len(cand) > limit:
        cand = cand[np.argpartition(-scores[cand], limit - 1)[:limit]]
    cand = cand[np.lexsort((cand, -scores[cand]))]
    return [(int(i), float(scores[i])) for i in cand]


def _walk(order: np.ndarray, scores: np.ndarray, allowed: np.ndarray, limit: int) -> list[tuple[int, float]]:
    """The first `limit` allowed items of a precomputed ranking."""
    return [(int(i), float(scores[i])) for i in order[allowed[order]][:limit]]


class Recommenders:
    """The recommenders over one tenant state, for one request."""

    def __init__(self, state: TenantState, now: datetime) -> None:
        self.s = state
        self.c = state.catalog
        self.now = now

    # --- building blocks ------------------------------------------------------------------------

    def similarity(self, seeds: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Each seed's weighted similarity to every item, float32 [len(seeds), n], from the state's
        precomputed similar items (`similar_items`). Summed over seeds it ranks; its argmax over seeds says
        which seed explains an item."""
        out = np.zeros((len(seeds), len(self.c)), dtype=np.float32)
        if not len(seeds):
            return out
        sim = self.s.similar_items()
        rows = sim.indices[seeds]
        valid = rows >= 0
        k = np.broadcast_to(np.arange(len(seeds))[:, None], rows.shape)
        out[k[valid], rows[valid]] = (sim.scores[seeds] * weights[:, None].astype(np.float32))[valid]
        return out

    def cross_targets(self, item: int) -> list[str]:
        """Categories that complement `item`: the tenant's complements for its most specific category
        that has some; else learned from the item's neighbours in other categories; else sibling
        categories under the same top category, most popular first."""
        cats = list(self.c.items[item].categories)
        for c in reversed(cats):
            if c in self.s.config.complements:
                return self.s.config.complements[c][:CROSS_CATEGORIES * 2]
        own = set(cats)
        leaf = self.c.leaf[item]
        learned: dict[str, float] = {}
        if self.s.neighbors is not None:
            for j, sc in zip(self.s.neighbors.indices[item], self.s.neighbors.scores[item], strict=True):
                if j < 0 or sc <= 0:
                    continue
                other = self.c.leaf[j]
                if other and other not in own:
                    learned[other] = learned.get(other, 0.0) + float(sc)
        if learned:
            return [c for c, _ in sorted(learned.items(), key=lambda kv: (-kv[1], kv[0]))][:CROSS_CATEGORIES]
        members = self.c.by_category.get(cats[0]) if len(cats) >= 2 else None
        if members is None:
            return []
        sums = np.bincount(self.c.leaf_code[members], weights=self.s.popular[members] + 1e-3,
                           minlength=len(self.c.leaf_names))
        siblings = [(-sums[code], name) for code, name in enumerate(self.c.leaf_names)
                    if sums[code] > 0 and name and name != leaf and name not in own]
        return [name for _, name in sorted(siblings)[:CROSS_CATEGORIES]]

    # --- recommenders -----------------------------------------------------------------------------

    def cross_category(self, anchors: Sequence[int], targets: Sequence[str], allowed: np.ndarray, limit: int
                       ) -> list[Pick]:
        """Complements of `anchors` from the target categories, the categories taking turns."""
        if not anchors or not targets:
            return []
        weights = np.ones(len(anchors), dtype=np.float32)
        anchor_idx = np.array(anchors, dtype=np.int64)
        base = self.similarity(anchor_idx, weights).sum(axis=0) + 0.2 * self.s.popular_norm + 1e-3
        per_target = []
        for t in targets:
            mask = allowed & self.c.in_categories([t])
            mask[anchor_idx] = False
            per_target.append(_ranked(base, mask, limit))
        title = self.c.title(anchors[0])
        out, seen = [], set()
        for rank in range(limit):
            for lst in per_target:
                if rank < len(lst) and lst[rank][0] not in seen:
                    seen.add(lst[rank][0])
                    out.append(Pick(lst[rank][0], lst[rank][1], "cross_category", f"Goes with {title}"))
        return out[:limit]

    def item_to_item(self, seeds: Seeds, allowed: np.ndarray, limit: int, *, name: str, verb: str) -> list[Pick]:
        if not len(seeds.idx):
            return []
        idx, w = seeds.idx[:SEEDS], seeds.weights[:SEEDS]
        recency = 0.85 ** np.arange(len(idx), dtype=np.float32)
        w = w / max(float(w.max()), 1e-6) * recency
        mask = allowed.copy()
        mask[idx] = False
        per_seed = self.similarity(idx, w)
        ranked = _ranked(per_seed.sum(axis=0), mask, limit)
        best_seed = per_seed[:, [i for i, _ in ranked]].argmax(axis=0) if ranked else []
        return [Pick(i, sc, name, f"{verb} {self.c.title(int(idx[b]))}")
                for (i, sc), b in zip(ranked, best_seed, strict=True)]

    def personalized(self, seeds: Seeds, allowed: np.ndarray, limit: int) -> list[Pick]:
        f = self.s.factors
        if f is None or not len(seeds.idx):
            return []
        vec = f.fold_in(seeds.idx, seeds.weights)
        mask = allowed.copy()
        mask[seeds.idx] = False
        return [Pick(i, sc, "personalized", "Picked for you from what you browse and buy")
                for i, sc in _ranked(f.scores(vec), mask, limit)]

    def interest_activity(self, seeds: Seeds, allowed: np.ndarray, limit: int) -> list[Pick]:
        if not len(seeds.idx):
            return []
        acts = self.c.activities
        if not len(acts) or not allowed[acts].any():
            return []
        interest = self.c.interest(seeds.idx, seeds.weights)
        scores = np.zeros(len(self.c), dtype=np.float32)
        scores[acts] = self.c.activity_features @ interest
        out = []
        for i, sc in _ranked(scores, allowed, limit):
            topic = self.c.top_feature(i, interest)
            out.append(Pick(i, sc, "interest_activity", f"Because you're into {topic}" if topic else
                            "Matches your interests"))
        return out

    def replenishment(self, person: PersonState | None, allowed: np.ndarray, limit: int) -> list[Pick]:
        if person is None:
            return []
        lead = timedelta(days=self.s.config.replenish_lead_days)
        due = []
        for item_id, bought in person.purchases.items():
            i = self.c.index.get(item_id)
            if i is None or not allowed[i] or self.c.replenish_days[i] <= 0:
                continue
            runs_out = bought + timedelta(days=int(self.c.replenish_days[i]))
            if self.now >= runs_out - lead:
                days = (self.now - bought).days
                due.append(Pick(i, 1.0 + (self.now - runs_out).total_seconds() / 86400 / 365, "replenishment",
                                f"Time to restock: you bought it {days} days ago"))
        return sorted(due, key=lambda p: -p.score)[:limit]

    def trending(self, allowed: np.ndarray, limit: int) -> list[Pick]:
        ranked = _walk(self.s.order("trending"), self.s.trending, allowed & (self.s.trending > 0), limit)
        return [Pick(i, sc, "trending", "Trending now") for i, sc in ranked]

    def popular(self, allowed: np.ndarray, limit: int, category: str = "") -> list[Pick]:
        mask = allowed & self.c.in_categories([category]) if category else allowed
        label = f"Popular in {category.replace('_', ' ')}" if category else "Popular right now"
        # items nobody touched yet still fill a list, after the ones people chose
        return [Pick(i, sc + 1e-6, "popular", label) for i, sc in _walk(self.s.order("popular"), self.s.popular,
                                                                       mask, limit)]


def excluded(state: TenantState, person: PersonState | None, now: datetime) -> np.ndarray:
    """Items this person must not be shown: in the cart, dismissed, bought (consumables until due)."""
    c, config = state.catalog, state.config
    out = np.zeros(len(c), dtype=bool)
    if person is None:
        return out
    for item_id in person.cart:
        if (i := c.index.get(item_id)) is not None:
            out[i] = True
    for item_id in person.dismissed:
        if (i := c.index.get(item_id)) is not None:
            out[i] = True
    window = timedelta(days=config.exclude_purchased_days)
    lead = timedelta(days=config.replenish_lead_days)
    for item_id, bought in person.purchases.items():
        i = c.index.get(item_id)
        if i is None:
            continue
        days = int(c.replenish_days[i])
        if days > 0:
            out[i] = now < bought + timedelta(days=days) - lead
        else:
            out[i] = now < bought + window
    return out


def recommend(state: TenantState, request: pb.RecommendRequest, person: PersonState | None, now: datetime, *,
              count: int, favourite_category: str = "", intent_item: str = "",
              intent_categories: Sequence[str] = ()) -> Result:
    """Rank `count` items for the request's scenario."""
    c = state.catalog
    r = Recommenders(state, now)
    scenario = request.scenario or pb.SCENARIO_HOME
    in_stock = scenario in (pb.SCENARIO_EMAIL, pb.SCENARIO_STORE_TABLET)
    allowed = c.mask(request.filters if request.HasField("filters") else None, now, in_stock=in_stock)
    allowed &= ~excluded(state, person, now)
    context = [i for i in ([c.index.get(request.context_item_id)] if request.context_item_id else []) if i is not None]
    context += [c.index[x] for x in request.context_item_ids if x in c.index]
    for i in context:
        allowed[i] = False
    seeds = Seeds.of(state, person, now)
    known = person is not None and person.known
    anonymous = not request.profile_id
    similar_name, similar_verb = ("session", "Similar to what you're browsing:") if anonymous else (
        "item_to_item", "Because you viewed")
    locked_on = c.index.get(intent_item) if intent_item else None
    limit = count * 2 + 5

    def cross(anchors: Sequence[int], targets: Sequence[str] | None = None) -> list[Pick]:
        if not anchors:
            return []
        return r.cross_category(anchors, list(targets) if targets else r.cross_targets(anchors[0]), allowed, limit)

    def q(share: float) -> int:
        return max(1, math.ceil(count * share))

    plan: list[tuple[list[Pick], int]] = []
    if scenario == pb.SCENARIO_PRODUCT_PAGE:
        anchor = context[:1]
        if locked_on is not None and (not anchor or anchor[0] == locked_on or
                                      c.leaf[anchor[0]] == c.leaf[locked_on]):
            plan.append((cross([locked_on], intent_categories), q(0.6)))
        plan.append((r.item_to_item(Seeds(np.array(anchor, dtype=np.int64), np.ones(len(anchor), np.float32)),
                                    allowed, limit, name="item_to_item", verb="Similar to"), q(0.6)))
        plan.append((cross(anchor), q(0.2)))
        plan.append((r.personalized(seeds, allowed, limit), q(0.2)))
    elif scenario == pb.SCENARIO_CART:
        cart = context or [c.index[x] for x in (person.cart if person else ()) if x in c.index]
        if locked_on is not None:
            plan.append((cross([locked_on], intent_categories), q(0.5)))
        plan.append((cross(cart), q(0.6)))
        plan.append((r.item_to_item(seeds, allowed, limit, name=similar_name, verb=similar_verb), q(0.2)))
        plan.append((r.personalized(seeds, allowed, limit), q(0.2)))
    else:  # home, email, store tablet
        plan.append((r.replenishment(person, allowed, 2), 2))
        if locked_on is not None:
            plan.append((cross([locked_on], intent_categories), q(0.5)))
        plan.append((r.personalized(seeds, allowed, limit), q(0.4 if scenario != pb.SCENARIO_EMAIL else 0.5)))
        plan.append((r.item_to_item(seeds, allowed, limit, name=similar_name, verb=similar_verb), q(0.3)))
        plan.append((r.interest_activity(seeds, allowed, 2), 2))
    if not known and favourite_category:
        plan.append((r.popular(allowed, limit, favourite_category), q(0.6)))
    plan.append((r.trending(allowed, limit), q(0.2)))
    plan.append((r.popular(allowed, limit), count))

    picks: list[Pick] = []
    taken: set[int] = set()
    for source, quota in plan:  # each source up to its quota, in plan order
        n = 0
        for p in source:
            if len(picks) >= count or n >= quota:
                break
            if p.idx not in taken:
                taken.add(p.idx)
                picks.append(p)
                n += 1
    for source, _ in plan:  # then what is left, in the same order
        for p in source:
            if len(picks) >= count:
                break
            if p.idx not in taken:
                taken.add(p.idx)
                picks.append(p)
    return Result(picks=picks, intent_locked=locked_on is not None, cold_start=not known)


def similar(state: TenantState, item_id: str, filters: pb.Filters | None, now: datetime, count: int) -> list[Pick]:
    """Items similar to one item, not personalised."""
    c = state.catalog
    i = c.index[item_id]
    allowed = c.mask(filters, now)
    allowed[i] = False
    r = Recommenders(state, now)
    seeds = Seeds(np.array([i], dtype=np.int64), np.ones(1, dtype=np.float32))
    out = r.item_to_item(seeds, allowed, count, name="item_to_item", verb="Similar to")
    if len(out) < count:  # thin data: the same category's popular items
        have = {p.idx for p in out}
        leaf = c.leaf[i]
        out += [p for p in r.popular(allowed, count * 2, leaf) if p.idx not in have][:count - len(out)]
    return out[:count]

