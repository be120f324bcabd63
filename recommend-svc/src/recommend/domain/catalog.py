"""A tenant's catalogue held in memory for serving: items in a fixed order with numpy columns for the
filters (kind, price, stock, active window), category membership, and a normalised content matrix
(categories, tags, brand) for content similarity and interest matching."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import scipy.sparse as sp

from mcloud.recommend.v1 import recommend_pb2 as pb

ACTIVITY = pb.ITEM_KIND_ACTIVITY
_NEVER = math.inf


def _epoch(ts, default: float) -> float:
    return ts.ToSeconds() if ts.seconds or ts.nanos else default


@dataclass
class Catalog:
    version: int
    items: list[pb.Item]
    ids: list[str] = field(init=False)
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        items = self.items
        self.ids = [i.id for i in items]
        self.index = {item_id: n for n, item_id in enumerate(self.ids)}
        n = len(items)
        self.kind = np.fromiter((i.kind for i in items), dtype=np.int8, count=n)
        self.price = np.fromiter((i.price_minor for i in items), dtype=np.int64, count=n)
        self.currency = np.array([i.currency for i in items], dtype="U8") if n else np.zeros(0, dtype="U8")
        self.in_stock = np.fromiter((i.in_stock for i in items), dtype=bool, count=n)
        self.starts = np.fromiter((_epoch(i.starts_at, -_NEVER) for i in items), dtype=np.float64, count=n)
        self.ends = np.fromiter((_epoch(i.ends_at, _NEVER) for i in items), dtype=np.float64, count=n)
        self.replenish_days = np.fromiter((i.replenish_after_days for i in items), dtype=np.int32, count=n)
        self.leaf = [i.categories[-1] if i.categories else "" for i in items]
        leaf_codes: dict[str, int] = {}
        self.leaf_code = np.fromiter((leaf_codes.setdefault(c, len(leaf_codes)) for c in self.leaf), dtype=np.int32,
                                     count=n)
        self.leaf_names = list(leaf_codes)
        members: dict[str, list[int]] = {}
        for n_, item in enumerate(items):
            for c in dict.fromkeys(item.categories):
                members.setdefault(c, []).append(n_)
        self.by_category = {c: np.array(v, dtype=np.int32) for c, v in members.items()}
        self._features(items)

    def _features(self, items: Sequence[pb.Item]) -> None:
        names: dict[str, int] = {}
        rows, cols, vals = [], [], []
        for n, item in enumerate(items):
            cats = list(dict.fromkeys(item.categories))
            feats: dict[str, float] = {}
            for depth, c in enumerate(cats, start=1):
                feats[f"category:{c}"] = depth / len(cats)  # the most specific category weighs most
            for t in item.tags:
                feats[f"tag:{t.lower()}"] = 0.8
            if item.brand:
                feats[f"brand:{item.brand.lower()}"] = 0.3
            for name, w in feats.items():
                rows.append(n)
                cols.append(names.setdefault(name, len(names)))
                vals.append(w)
        m = sp.csr_matrix((np.array(vals, dtype=np.float32), (rows, cols)), shape=(len(items), max(len(names), 1)))
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        norms[norms == 0] = 1
        self.features = sp.csr_matrix(sp.diags(1 / norms) @ m, dtype=np.float32)
        self.activities = np.flatnonzero(self.kind == ACTIVITY)
        self.activity_features = self.features[self.activities]
        self.feature_names = [""] * len(names)
        for name, i in names.items():
            self.feature_names[i] = name

    def __len__(self) -> int:
        return len(self.ids)

    def title(self, idx: int) -> str:
        item = self.items[idx]
        return item.title or item.id

    def active(self, now: datetime) -> np.ndarray:
        """Items that can be recommended now: inside their window (activities until they end)."""
        t = now.timestamp()
        return (self.ends > t) & ((self.kind == ACTIVITY) | (self.starts <= t))

    def in_categories(self, categories: Sequence[str]) -> np.ndarray:
        mask = np.zeros(len(self), dtype=bool)
        for c in categories:
            idx = self.by_category.get(c)
            if idx is not None:
                mask[idx] = True
        return mask

    def mask(self, f: pb.Filters | None, now: datetime, *, in_stock: bool = False) -> np.ndarray:
        """What a request may show: active items that pass the filters."""
        m = self.active(now)
        if f is None:
            return m & self.in_stock if in_stock else m
        if f.categories:
            m &= self.in_categories(f.categories)
        if f.exclude_categories:
            m &= ~self.in_categories(f.exclude_categories)
        if f.min_price_minor or f.max_price_minor:
            if f.currency:
                m &= self.currency == f.currency
            if f.min_price_minor:
                m &= self.price >= f.min_price_minor
            if f.max_price_minor:
                m &= self.price <= f.max_price_minor
        if f.in_stock_only or in_stock:
            m &= self.in_stock
        if f.kinds:
            m &= np.isin(self.kind, np.array(list(f.kinds), dtype=np.int8))
        for item_id in f.exclude_item_ids:
            if (i := self.index.get(item_id)) is not None:
                m[i] = False
        return m

    def interest(self, seeds: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """A person's interest over content features (dense [n_features]) from what they interacted with."""
        out = np.zeros(self.features.shape[1], dtype=np.float32)
        if not len(seeds):
            return out
        f = self.features
        starts, ends = f.indptr[seeds], f.indptr[np.asarray(seeds) + 1]
        lengths = ends - starts
        if not lengths.sum():
            return out
        cells = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths) + np.arange(lengths.sum())
        np.add.at(out, f.indices[cells], f.data[cells] * np.repeat(weights.astype(np.float32), lengths))
        return out

    def top_feature(self, idx: int, interest: np.ndarray) -> str:
        """The label of the feature of item `idx` that matches `interest` most ("running", "marathon")."""
        f = self.features
        lo, hi = f.indptr[idx], f.indptr[idx + 1]
        if lo == hi:
            return ""
        cols = f.indices[lo:hi]
        best = cols[int(np.argmax(f.data[lo:hi] * interest[cols]))]
        return self.feature_names[best].split(":", 1)[1].replace("_", " ")
