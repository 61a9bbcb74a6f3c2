"""The size predictor and the cost model of ``layerforge suggest`` (pure: no I/O).

The unit of sharing is the layer blob. A distribution whose installed size exceeds
``layer_threshold`` has a layer of its own, the same blob in every image whose lock holds the
same wheel (distcache), so its bytes are known exactly once it has been built. The other
distributions of a node share one layer, predicted as the sum of each member's share (the
compressed size of the layer it was measured in, times its part of that layer's installed
bytes). A distribution never built is estimated from its wheel (1.15 times its bytes,
measured 1.02 to 1.16), and the figure is then marked *estimated*. docs/suggest.md explains
the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from layerforge.suggest.releases import change_probability

WHEEL_TO_LAYER = 1.15  # compressed layer bytes per wheel byte (docs/suggest.md)
WHEEL_TO_INSTALLED = 3.0  # installed bytes per wheel byte, for the threshold of new dists

Dist = tuple[str, str]  # (canonical name, version)


@dataclass(frozen=True)
class Blob:
    ident: str  # a digest when measured; "predicted:..." otherwise
    size: int
    estimated: bool = False
    dists: frozenset[str] = frozenset()  # the distributions it holds (dependency layers)


@dataclass
class Known:
    """What the built store says: per node, the layers that are not dependencies (OS, venv,
    system, runtime, app) and its config+manifest bytes; per distribution, its own layer or
    its share of a small layer, and its installed bytes."""

    threshold: int
    fixed: dict[str, list[Blob]] = field(default_factory=dict)
    meta: dict[str, int] = field(default_factory=dict)
    own: dict[Dist, Blob] = field(default_factory=dict)
    share: dict[Dist, float] = field(default_factory=dict)
    installed: dict[Dist, int] = field(default_factory=dict)
    small: dict[frozenset[Dist], Blob] = field(default_factory=dict)  # measured small layers

    def add_deps_layer(self, digest: str, size: int, dists: Sequence[tuple[Dist, int]]) -> None:
        """One built dependency layer and the installed bytes of each distribution in it."""
        for dist, installed in dists:
            self.installed[dist] = installed
        names = frozenset(d[0] for d, _ in dists)
        if len(dists) == 1 and dists[0][1] > self.threshold:
            self.own[dists[0][0]] = Blob(digest, size, dists=names)
            return
        total = sum(i for _, i in dists) or 1
        for dist, installed in dists:
            self.share[dist] = size * installed / total
        self.small[frozenset(d for d, _ in dists)] = Blob(digest, size, dists=names)


@dataclass(frozen=True)
class Shape:
    """A candidate hierarchy after its re-lock: each node's parent, kind and own
    distributions (with wheel sizes, for those never built)."""

    parents: dict[str, str | None]
    services: tuple[str, ...]
    dists: dict[str, dict[Dist, int]]  # node -> its own distributions -> wheel bytes


@dataclass(frozen=True)
class Prediction:
    layers: dict[str, tuple[Blob, ...]]  # node -> the layers it adds
    meta: dict[str, int]

    def chain(self, shape: Shape, node: str) -> list[str]:
        out: list[str] = []
        current: str | None = node
        while current is not None:
            out.append(current)
            current = shape.parents.get(current)
        return out[::-1]

    def image(self, shape: Shape, node: str) -> dict[str, Blob]:
        return {b.ident: b for n in self.chain(shape, node) for b in self.layers.get(n, ())}

    def stored(self) -> int:
        blobs = {b.ident: b.size for layers in self.layers.values() for b in layers}
        return sum(blobs.values()) + sum(self.meta.values())

    def pulled(self, shape: Shape, services: list[str]) -> int:
        """What one node running ``services`` pulls: each blob once, plus each image's
        config and manifest."""
        blobs: dict[str, int] = {}
        for s in services:
            blobs.update({i: b.size for i, b in self.image(shape, s).items()})
        return sum(blobs.values()) + sum(self.meta.get(s, 0) for s in services)

    def estimated(self) -> bool:
        return any(b.estimated for layers in self.layers.values() for b in layers)

    def rebuild(self, shape: Shape, pools: dict[str, list[str]], rates: dict[str, float]) -> int:
        """Bytes pulled a month because layers change: for each dependency layer, the chance
        it changes (its distributions' release rates) times its size times the pools that
        pull it."""
        images = {p: self.pool_blobs(shape, ss) for p, ss in pools.items()}
        blobs = {b.ident: b for layers in self.layers.values() for b in layers if b.dists}
        total = 0.0
        for ident, blob in blobs.items():
            chance = change_probability(rates.get(d, 0.0) for d in blob.dists)
            total += chance * blob.size * sum(1 for held in images.values() if ident in held)
        return round(total)

    def pool_blobs(self, shape: Shape, services: list[str]) -> set[str]:
        return {i for s in services if s in shape.parents for i in self.image(shape, s)}


def predict(known: Known, shape: Shape) -> Prediction:
    """The layers of every node of ``shape``: its fixed layers as built, an own layer per
    large distribution, and one small layer for the rest."""
    layers: dict[str, tuple[Blob, ...]] = {}
    average_meta = sum(known.meta.values()) // max(len(known.meta), 1)
    meta: dict[str, int] = {}
    for node, dists in shape.dists.items():
        out = list(known.fixed.get(node, []))
        small: dict[Dist, int] = {}
        for dist, wheel in sorted(dists.items()):
            installed = known.installed.get(dist, int(wheel * WHEEL_TO_INSTALLED))
            if installed > known.threshold:
                out.append(known.own.get(dist) or _new(f"own:{dist[0]}=={dist[1]}", wheel))
            else:
                small[dist] = wheel
        if small:
            out.append(_small(known, small))
        layers[node] = tuple(out)
        meta[node] = known.meta.get(node, average_meta)
    return Prediction(layers, meta)


def _new(ident: str, wheel: int) -> Blob:
    name = ident.split(":", 1)[1].split("==", 1)[0]
    return Blob(
        f"predicted:{ident}",
        int(wheel * WHEEL_TO_LAYER),
        estimated=True,
        dists=frozenset({name}),
    )


def _small(known: Known, dists: dict[Dist, int]) -> Blob:
    members = frozenset(dists)
    if members in known.small:
        return known.small[members]  # the very layer that was built
    size = 0.0
    estimated = False
    for dist, wheel in dists.items():
        if dist in known.share:
            size += known.share[dist]
        else:
            size += wheel * WHEEL_TO_LAYER
            estimated = True
    ident = "predicted:small:" + ",".join(f"{n}=={v}" for n, v in sorted(members))
    return Blob(ident, round(size), estimated, frozenset(n for n, _ in members))


@dataclass(frozen=True)
class Score:
    stored: int
    pulled: dict[str, int]  # pool -> bytes one node of that pool pulls
    images: int
    estimated: bool
    rebuild: int = 0  # bytes pulled a month because layers change (0: rates unknown)
    horizon: int = 6  # months of rebuilds weighed into the total

    @property
    def pulled_total(self) -> int:
        return sum(self.pulled.values())

    @property
    def total(self) -> int:
        return self.stored + self.pulled_total + self.horizon * self.rebuild


def score(
    known: Known,
    shape: Shape,
    pools: dict[str, list[str]],
    rates: dict[str, float] | None = None,
    horizon: int = 6,
) -> Score:
    prediction = predict(known, shape)
    return Score(
        stored=prediction.stored(),
        pulled={
            p: prediction.pulled(shape, [s for s in ss if s in shape.parents])
            for p, ss in pools.items()
        },
        images=len(shape.parents),
        estimated=prediction.estimated(),
        rebuild=prediction.rebuild(shape, pools, rates or {}),
        horizon=horizon,
    )


def pareto_front(scores: dict[str, Score]) -> list[str]:
    """The candidates no other one beats in every measure (stored, pulled, images)."""

    def key(s: Score) -> tuple[int, int, int, int]:
        return (s.stored, s.pulled_total, s.rebuild, s.images)

    front: list[str] = []
    for name, s in scores.items():
        a = key(s)
        beaten = any(
            all(x <= y for x, y in zip(key(o), a, strict=True)) and key(o) != a
            for n, o in scores.items()
            if n != name
        )
        if not beaten:
            front.append(name)
    return front


def recommend(scores: dict[str, Score], front: list[str], today: str) -> str:
    """The front's member with the lowest score; ties: fewer images, then today's."""
    return min(front, key=lambda n: (scores[n].total, scores[n].images, n != today))
