"""Default boxes fitted to a dataset's boxes: the sizes and aspect ratios of each source map chosen to cover the
boxes as the model sees them, with the maps, their strides and the boxes per location of the model kept (so the
network, and any weights it has, are unchanged).

The objective is the share of boxes whose best default box reaches IoU 0.5 (what the paper's matching learns
from), then the mean best IoU. Each score also counts the positives per box (the default boxes the matching
would train on), reported beside the coverage but not optimised: a condition on them changed nothing measurable
(docs/default_boxes.md).

The search is plain and deterministic: sizes start at the quantiles of the box scales, map by map from fine to
coarse, and ratios at the quantiles of the aspect ratios of each map's boxes; a coordinate search then scales one
value at a time while the objective improves, no map stops being the best map for some of the boxes, and no map
gets boxes smaller than its cells. The model's own boxes are another starting point, and the result is never worse
than them on the boxes given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou

from .config import ModelConfig
from .errors import SSDError
from .model.priors import generate_priors

MAX_FIT_BOXES = 3000  # boxes the search scores candidates on (a seeded sample of larger sets)
FACTORS = (0.7, 0.85, 1.18, 1.4)  # the multiplicative steps of the coordinate search
ROUNDS = 4
MIN_RESPONSIBILITY = 0.02  # a map that is the best map for at least this share of boxes must stay so


@dataclass(frozen=True)
class PriorSpec:
    """Default-box sizes per map as fractions of the input side, and the aspect ratios (>= 1) of each map."""

    min_sizes: tuple[float, ...]
    max_sizes: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]

    @classmethod
    def of(cls, config: ModelConfig) -> PriorSpec:
        mins, maxs = config.prior_sizes()
        return cls(tuple(mins), tuple(maxs), tuple(tuple(float(r) for r in rs) for rs in config.aspect_ratios))

    def rounded(self, input_size: int) -> PriorSpec:
        """Sizes rounded to 0.1 pixel of the input and ratios to 0.01, as a config file holds them."""

        def px(v: float) -> float:
            return round(v * input_size, 1) / input_size

        return PriorSpec(
            tuple(px(v) for v in self.min_sizes),
            tuple(px(v) for v in self.max_sizes),
            tuple(tuple(round(r, 2) for r in rs) for rs in self.aspect_ratios),
        )

    def config_values(self, input_size: int) -> dict[str, list]:
        """The ``model:`` values that give these boxes: sizes in pixels (and ``scales`` cleared)."""
        return {
            "min_sizes": [round(v * input_size, 1) for v in self.min_sizes],
            "max_sizes": [round(v * input_size, 1) for v in self.max_sizes],
            "scales": None,
            "aspect_ratios": [list(rs) for rs in self.aspect_ratios],
        }


@dataclass(frozen=True)
class FitScore:
    """How well some default boxes cover the boxes: the share at IoU >= 0.5, the mean best IoU, per map the share
    of boxes it covers at 0.5 and the share for which it is the best map, and the mean number of positives per
    box (default boxes at the matcher's IoU threshold or above, at least 1; the contest between the boxes of one
    image aside)."""

    share_iou50: float
    mean_best_iou: float
    per_map_iou50: tuple[float, ...]
    per_map_best: tuple[float, ...]
    mean_positives: float

    def key(self) -> tuple[float, float]:
        """Coverage, then mean best IoU."""
        return (self.share_iou50, self.mean_best_iou)


@dataclass(frozen=True)
class PriorFit:
    """The fitted boxes and the scores before and after, on all the boxes given."""

    spec: PriorSpec
    before: FitScore
    after: FitScore


class _Scorer:
    """Each box's best IoU on each map and its positives there, for a spec; recomputes only the maps whose values
    changed."""

    def __init__(self, boxes_xyxy: Tensor, config: ModelConfig, feature_sizes: Sequence[int]) -> None:
        self.boxes = boxes_xyxy.float()
        self.config, self.feature_sizes = config, list(feature_sizes)
        self.cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    def best_per_map(self, spec: PriorSpec) -> tuple[Tensor, Tensor]:
        """``Tensor[G, K]`` twice: each box's best IoU with the default boxes of each map, and how many of them
        are positives (IoU at least the matcher's ``config.iou_threshold``)."""
        per_map = [self._map(spec, k) for k in range(len(self.feature_sizes))]
        return torch.stack([b for b, _ in per_map], dim=1), torch.stack([c for _, c in per_map], dim=1)

    def _map(self, spec: PriorSpec, k: int) -> tuple[Tensor, Tensor]:
        key = (k, spec.min_sizes[k], spec.max_sizes[k], spec.aspect_ratios[k])
        if key not in self.cache:
            c = self.config
            step = None if c.steps is None else [c.steps[k]]
            priors = generate_priors([self.feature_sizes[k]], c.input_size, [spec.min_sizes[k]],
                                     [spec.max_sizes[k]], [spec.aspect_ratios[k]], step, c.clip)  # fmt: skip
            iou = box_iou(self.boxes, box_convert(priors, "cxcywh", "xyxy"))  # [G, P_k]
            self.cache[key] = (iou.amax(dim=1), (iou >= c.iou_threshold).sum(dim=1))
        return self.cache[key]

    def score(self, spec: PriorSpec) -> FitScore:
        per_map, counts = self.best_per_map(spec)  # [G, K] each
        best, best_map = per_map.max(dim=1)
        shares = torch.bincount(best_map, minlength=per_map.shape[1]).double() / len(best)
        positives = counts.sum(dim=1).clamp(min=1)  # the matcher's: every prior over its threshold, else the best
        return FitScore(
            float((best >= 0.5).double().mean()),
            float(best.double().mean()),
            tuple((per_map >= 0.5).double().mean(dim=0).tolist()),
            tuple(shares.tolist()),
            float(positives.double().mean()),
        )


def fit_priors(boxes_xyxy: Tensor, config: ModelConfig, feature_sizes: Sequence[int], seed: int = 0) -> PriorFit:
    """Default boxes for ``config``'s maps fitted to ``boxes_xyxy: Tensor[G, 4]`` (normalised to their images,
    i.e. as the model sees them after the warp to its square input). Deterministic for a given ``seed``."""
    if len(boxes_xyxy) == 0:
        raise SSDError("no boxes to fit the default boxes to")
    sample = _sample(boxes_xyxy, seed)
    scorer = _Scorer(sample, config, feature_sizes)
    own = PriorSpec.of(config)
    floors = cell_sizes(config, feature_sizes)
    starts = [own, quantile_start(sample, own, own_sizes=True), quantile_start(sample, own, floors=floors)]
    searched = (_coordinate_search(scorer, s, config.input_size, floors) for s in starts)
    fitted = max(searched, key=lambda s: scorer.score(s).key())
    full = _Scorer(boxes_xyxy, config, feature_sizes) if len(sample) < len(boxes_xyxy) else scorer
    before, after = full.score(own), full.score(fitted)
    if after.key() < before.key():  # the sample misled the search: the model's own boxes stay
        fitted, after = own, before
    return PriorFit(fitted, before, after)


def cell_sizes(config: ModelConfig, feature_sizes: Sequence[int]) -> list[float]:
    """Each map's cell side (its stride) as a fraction of the input: the smallest default box it is given, since
    a map whose cells are coarser than an object cannot place it, however well a box would fit where it lies."""
    steps = config.steps or [config.input_size / size for size in feature_sizes]
    return [step / config.input_size for step in steps]


def _sample(boxes: Tensor, seed: int) -> Tensor:
    if len(boxes) <= MAX_FIT_BOXES:
        return boxes
    generator = torch.Generator().manual_seed(seed)
    return boxes[torch.randperm(len(boxes), generator=generator)[:MAX_FIT_BOXES]]


def quantile_start(
    boxes_xyxy: Tensor, like: PriorSpec, own_sizes: bool = False, floors: Sequence[float] | None = None
) -> PriorSpec:
    """Sizes at the quantiles of the box scales ``sqrt(w h)``, one band per map from fine to coarse (or, with
    ``own_sizes``, the bands of ``like``'s sizes), none below its ``floors``; each map's ratios at the quantiles of
    ``max(w/h, h/w)`` of the boxes in its band, as many per map as ``like`` has."""
    wh = (boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]).double().clamp(min=1e-6)
    scale = (wh[:, 0] * wh[:, 1]).sqrt()
    stretch = torch.maximum(wh[:, 0] / wh[:, 1], wh[:, 1] / wh[:, 0])
    k = len(like.min_sizes)
    if own_sizes:
        mins, maxs = list(like.min_sizes), list(like.max_sizes)
    else:
        edges = torch.quantile(scale, torch.linspace(0.02, 0.98, k + 1, dtype=torch.float64)).tolist()
        lows = floors or [0.0] * k
        mins = [max(e, low) for e, low in zip(edges[:-1], lows)]
        maxs = [max(e, low) for e, low in zip(edges[1:], mins)]
    ratios = []
    for m in range(k):
        band = (scale >= mins[m]) & (scale <= maxs[m])
        values = stretch[band] if band.sum() >= 2 else stretch
        ratios.append(_spread_ratios(values, len(like.aspect_ratios[m])))
    return PriorSpec(tuple(mins), tuple(maxs), tuple(ratios))


def _spread_ratios(stretch: Tensor, count: int) -> tuple[float, ...]:
    """``count`` ratios from the upper quantiles of ``stretch``, at least 1.2 and 15% apart (equal boxes would
    waste a ratio)."""
    qs = (
        torch.linspace(0.5, 0.95, count, dtype=torch.float64)
        if count > 1
        else torch.tensor([0.75], dtype=torch.float64)
    )
    ratios: list[float] = []
    for value in torch.quantile(stretch, qs).tolist():
        ratio = max(1.2, value)
        if ratios and ratio < ratios[-1] * 1.15:
            ratio = ratios[-1] * 1.15
        ratios.append(ratio)
    return tuple(ratios)


def _coordinate_search(scorer: _Scorer, spec: PriorSpec, input_size: int, floors: Sequence[float]) -> PriorSpec:
    """Scale one value at a time by each of ``FACTORS``, keeping a change that raises the score and leaves every
    responsible map responsible, with no min size below its map's floor; rounds until none helps (at most
    ``ROUNDS``)."""
    spec = spec.rounded(input_size)
    best = scorer.score(spec)
    for _ in range(ROUNDS):
        improved = False
        for candidate_of in _moves(spec, floors):
            for factor in FACTORS:
                candidate = candidate_of(factor)
                if candidate is None:
                    continue
                candidate = candidate.rounded(input_size)
                score = scorer.score(candidate)
                if score.key() > best.key() and _keeps_maps(best, score):
                    spec, best, improved = candidate, score, True
        if not improved:
            break
    return spec


def _keeps_maps(before: FitScore, after: FitScore) -> bool:
    return all(
        a >= MIN_RESPONSIBILITY or b < MIN_RESPONSIBILITY for b, a in zip(before.per_map_best, after.per_map_best)
    )


def _moves(spec: PriorSpec, floors: Sequence[float]):
    """Functions ``factor -> changed spec or None``: each map's min size, max size and each of its ratios."""
    k = len(spec.min_sizes)
    for m in range(k):
        yield lambda f, m=m: _set_size(spec, m, "min", spec.min_sizes[m] * f, floors[m])
        yield lambda f, m=m: _set_size(spec, m, "max", spec.max_sizes[m] * f, floors[m])
        for j in range(len(spec.aspect_ratios[m])):
            yield lambda f, m=m, j=j: _set_ratio(spec, m, j, math.exp(math.log(spec.aspect_ratios[m][j]) * f))


def _set_size(spec: PriorSpec, m: int, which: str, value: float, floor: float) -> PriorSpec | None:
    mins, maxs = list(spec.min_sizes), list(spec.max_sizes)
    (mins if which == "min" else maxs)[m] = value
    if not (0.0 < mins[m] <= maxs[m] <= 1.5 and (which == "max" or mins[m] >= floor - 1e-9)):
        return None
    return replace(spec, min_sizes=tuple(mins), max_sizes=tuple(maxs))


def _set_ratio(spec: PriorSpec, m: int, j: int, value: float) -> PriorSpec | None:
    if not 1.05 <= value <= 10.0:
        return None
    rows = [list(rs) for rs in spec.aspect_ratios]
    rows[m][j] = value
    return replace(spec, aspect_ratios=tuple(tuple(rs) for rs in rows))
