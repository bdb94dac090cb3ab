"""``ssd check-data``: a dataset's problems and statistics without training, and how well default boxes cover it.

Coverage: every ground-truth box, normalised to its image (the model warps images to a square), is compared with
every default box; the share whose best prior reaches IoU 0.5 is the share the paper's matching can learn from
without falling back to a forced, poorly fitting prior.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor
from torchvision.ops import box_convert, box_iou
from tqdm import tqdm

from ..checkpoint import load
from ..config import load_run_config, shipped_config_names
from ..errors import DataError, SSDError
from ..model.priors import boxes_per_location
from ..model.ssd import SSD
from ..presets import PRESETS, model_config
from ..prior_fit import PriorFit, fit_priors
from . import build_dataset
from .dataset import DataConfig, DetectionDataset, Problem, load_data_config

SIZE_EDGES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, math.inf)  # sqrt(box area / image area)
ASPECT_EDGES = (0.0, 1 / 4, 1 / 2, 0.8, 1.25, 2.0, 4.0, math.inf)  # width / height in pixels
IOU_EDGES = (0.0, 0.3, 0.5, 0.7, 1.0 + 1e-6)
QUANTILES = {"min": 0.0, "p05": 0.05, "p25": 0.25, "median": 0.5, "p75": 0.75, "p95": 0.95, "max": 1.0}


@dataclass
class Distribution:
    """Quantiles of some values and their counts in the bins ``[edges[i], edges[i + 1])``."""

    quantiles: dict[str, float]
    edges: list[float]
    counts: list[int]

    @classmethod
    def of(cls, values: Tensor, edges: Sequence[float]) -> Distribution:
        values = values.double()
        q = torch.quantile(values, torch.tensor(list(QUANTILES.values()), dtype=torch.float64))
        bins = torch.bucketize(values, torch.tensor(edges[1:-1], dtype=torch.float64), right=True)
        counts = torch.bincount(bins, minlength=len(edges) - 1)
        return cls(dict(zip(QUANTILES, q.tolist())), list(edges), counts.tolist())


@dataclass
class PriorLayout:
    """Default boxes ``priors_cxcywh: Tensor[P, 4]`` (normalised) laid out map by map, as the heads produce them."""

    priors_cxcywh: Tensor
    feature_sizes: list[int]
    boxes_per_location: list[int]

    @classmethod
    def from_model(cls, model: SSD) -> PriorLayout:
        per_location = boxes_per_location(model.config.aspect_ratios)
        return cls(model.priors.detach().cpu(), list(model.feature_sizes), per_location)

    def counts(self) -> list[int]:
        """Number of priors on each feature map; checked against the priors tensor."""
        counts = [f * f * k for f, k in zip(self.feature_sizes, self.boxes_per_location)]
        if sum(counts) != len(self.priors_cxcywh):
            raise ValueError(f"feature maps give {sum(counts)} priors but the tensor holds {len(self.priors_cxcywh)}")
        return counts


@dataclass
class ScaleCoverage:
    """One feature map: how many boxes its best prior covers at IoU >= 0.5, and how often it is the best map."""

    feature_size: int
    num_priors: int
    share_iou50: float
    share_best: float
    mean_best_iou: float


@dataclass
class Coverage:
    """Best prior IoU of every ground-truth box, overall and per feature map."""

    num_boxes: int
    share_iou50: float
    mean_best_iou: float
    best_iou: Distribution
    scales: list[ScaleCoverage]


def prior_coverage(boxes_xyxy: Tensor, layout: PriorLayout, chunk: int = 4096) -> Coverage:
    """Coverage of ``boxes_xyxy: Tensor[G, 4]`` (normalised to 0..1 of their images, G >= 1) by ``layout``'s priors."""
    counts = layout.counts()
    priors_xyxy = box_convert(layout.priors_cxcywh.float(), "cxcywh", "xyxy")
    per_map = []  # chunks of [g, K]: best IoU on each map
    for part in boxes_xyxy.float().split(chunk):
        iou = box_iou(part, priors_xyxy)  # [g, P]
        per_map.append(torch.stack([block.amax(dim=1) for block in iou.split(counts, dim=1)], dim=1))
    best_per_map = torch.cat(per_map)  # [G, K]
    best, best_map = best_per_map.max(dim=1)  # [G]
    scales = [
        ScaleCoverage(
            feature_size=size,
            num_priors=count,
            share_iou50=float((best_per_map[:, k] >= 0.5).double().mean()),
            share_best=float((best_map == k).double().mean()),
            mean_best_iou=float(best_per_map[:, k].double().mean()),
        )
        for k, (size, count) in enumerate(zip(layout.feature_sizes, counts))
    ]
    return Coverage(len(best), float((best >= 0.5).double().mean()), float(best.double().mean()),
                    Distribution.of(best, IOU_EDGES), scales)  # fmt: skip


@dataclass
class SplitStats:
    """Statistics of one split's usable images; crowd regions are counted apart and not in the distributions."""

    split: str
    num_images: int
    images_without_boxes: int
    num_boxes: int
    num_difficult: int
    num_crowd: int
    boxes_per_class: dict[str, int]
    size: Distribution | None
    aspect: Distribution | None
    coverage: Coverage | None


@dataclass
class CheckReport:
    """Everything ``ssd check-data`` found: per-split statistics and the list of problems."""

    data: str
    format: str
    class_names: list[str]
    model: str | None
    splits: list[SplitStats]
    problems: list[Problem]
    format_inferred: bool = False  # told from the files: the data YAML has no format:
    names_source: str = ""  # where the class list came from

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["ok"] = self.ok
        values["problems"] = [{**asdict(p), "text": str(p)} for p in self.problems]
        return _finite(values)


def _finite(value: Any) -> Any:
    """``value`` with infinite bin edges written as None, so that the JSON is strict."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and math.isinf(value) else value


def check_dataset(
    data_config: DataConfig,
    splits: Sequence[str] | None = None,
    model: SSD | PriorLayout | None = None,
    *,
    decode_images: bool = True,
    model_name: str | None = None,
) -> CheckReport:
    """Find the problems of ``splits`` (default: all the config defines) and gather statistics.

    ``decode_images`` decodes every image to find corrupt files (the slow part, with a progress bar).
    With ``model`` (an SSD or its :class:`PriorLayout`) the report says how well its default boxes cover the boxes;
    ``model_name`` names it in the report.
    """
    layout = PriorLayout.from_model(model) if isinstance(model, SSD) else model
    report = CheckReport(
        data_config.source, data_config.format, [], model_name, [], [], format_inferred=data_config.format_inferred
    )
    for split in splits or list(data_config.splits):
        try:
            dataset = build_dataset(data_config, split, skip_bad=True)
        except DataError as exc:
            report.problems.append(Problem(exc.path, "", exc.message))
            continue
        report.class_names, report.names_source = dataset.class_names[1:], dataset.names_source
        report.problems += dataset.problems
        bad = torch.zeros(len(dataset), dtype=torch.bool)
        if decode_images:
            for index in tqdm(range(len(dataset)), desc=f"decoding {split}", unit="img", leave=False, disable=None):
                try:
                    dataset.load_sample(index)
                except DataError as exc:
                    report.problems.append(Problem(exc.path, "", exc.message))
                    bad[index] = True
        report.splits.append(split_stats(dataset, split, ~bad, layout))
    return report


def split_stats(dataset: DetectionDataset, split: str, usable: Tensor, layout: PriorLayout | None) -> SplitStats:
    """Statistics of the images of ``dataset`` marked ``usable: Tensor[N]`` (bool)."""
    table = dataset.box_table()
    keep = usable[table["image_index"]]
    crowd = table["iscrowd"] & keep
    objects = ~table["iscrowd"] & keep
    boxes = table["boxes"][objects].double()  # [M, 4] px
    height_width = table["image_size"][objects].double()  # [M, 2]
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    per_class = torch.bincount(table["labels"][objects], minlength=dataset.num_classes)
    with_boxes = torch.zeros(len(dataset), dtype=torch.bool)
    with_boxes[table["image_index"][objects]] = True
    size = aspect = coverage = None
    if len(boxes):
        size = Distribution.of(torch.sqrt(widths * heights / (height_width[:, 0] * height_width[:, 1])), SIZE_EDGES)
        aspect = Distribution.of(widths / heights, ASPECT_EDGES)
        if layout is not None:
            scale = torch.stack([height_width[:, 1], height_width[:, 0]] * 2, dim=1)  # [M, 4]: W, H, W, H
            coverage = prior_coverage(boxes / scale, layout)
    return SplitStats(
        split=split,
        num_images=int(usable.sum()),
        images_without_boxes=int((usable & ~with_boxes).sum()),
        num_boxes=len(boxes),
        num_difficult=int((table["difficult"] & objects).sum()),
        num_crowd=int(crowd.sum()),
        boxes_per_class=dict(zip(dataset.class_names[1:], per_class[1:].tolist())),
        size=size,
        aspect=aspect,
        coverage=coverage,
    )


def format_report(report: CheckReport) -> str:
    """The report as text a person can read: a block per split, then the problems."""
    told = ", told from the files" if report.format_inferred else ""
    lines = [f"data: {report.data} ({report.format}{told}, {len(report.class_names)} classes)"]
    if report.class_names:
        lines.append(f"classes: {', '.join(report.class_names)} (from {report.names_source})")
    if report.model:
        lines.append(f"default boxes of: {report.model}")
    for s in report.splits:
        lines += ["", f"split {s.split}: {s.num_images} images ({s.images_without_boxes} without objects), "
                  f"{s.num_boxes} boxes ({s.num_difficult} difficult), {s.num_crowd} crowd regions"]  # fmt: skip
        lines.append(f"  {'class':<20} {'boxes':>8} {'share':>7}")
        for name, count in s.boxes_per_class.items():
            lines.append(f"  {name:<20} {count:>8} {_percent(count / max(s.num_boxes, 1)):>7}")
        if s.size is not None and s.aspect is not None:
            lines += _distribution_lines("box size sqrt(wh/WH)", s.size)
            lines += _distribution_lines("aspect ratio w/h", s.aspect)
        if s.coverage is not None:
            c = s.coverage
            lines.append(f"  default-box coverage: {_percent(c.share_iou50)} of boxes have a prior with IoU >= 0.5"
                         f" (mean best IoU {c.mean_best_iou:.2f})")  # fmt: skip
            lines.append(f"    {'map':>7} {'priors':>8} {'IoU>=0.5':>9} {'best map':>9} {'mean IoU':>9}")
            for sc in c.scales:
                lines.append(
                    f"    {f'{sc.feature_size}x{sc.feature_size}':>7} {sc.num_priors:>8} "
                    f"{_percent(sc.share_iou50):>9} {_percent(sc.share_best):>9} {sc.mean_best_iou:>9.2f}"
                )
    lines += ["", f"problems ({len(report.problems)}):" if report.problems else "problems: none"]
    lines += [f"  {p}" for p in report.problems]
    lines.append("result: OK" if report.ok else f"result: {len(report.problems)} problem(s) found")
    return "\n".join(lines)


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def _distribution_lines(title: str, d: Distribution) -> list[str]:
    quantiles = "  ".join(f"{k} {v:.3g}" for k, v in d.quantiles.items())
    total = max(sum(d.counts), 1)
    bins = " | ".join(
        f"{_edge_label(lo, hi)} {_percent(n / total)}" for lo, hi, n in zip(d.edges, d.edges[1:], d.counts)
    )
    return [f"  {title}: {quantiles}", f"    {bins}"]


def _edge_label(lo: float, hi: float) -> str:
    if lo == 0:
        return f"<{hi:.3g}"
    return f">={lo:.3g}" if math.isinf(hi) else f"{lo:.3g}-{hi:.3g}"


def run_check_data(
    data_yaml: str, splits: list[str] | None, model_name: str | None, as_json: bool, fit: bool = False
) -> int:
    """``ssd check-data``: print the report (text or JSON) and return the exit status, 1 if problems were found.

    ``model_name`` is a preset (``ssd300_vgg16``...) or a checkpoint file whose default boxes are checked; with
    ``fit`` they are also fitted to the boxes of the train split (see ``ssd.prior_fit``).
    An unknown preset raises SSDError (the CLI prints it and exits 2).
    """
    try:
        config = load_data_config(data_yaml)
    except DataError as exc:
        report = CheckReport(data_yaml, "?", [], model_name, [], [Problem(exc.path, "", exc.message)])
        print(json.dumps(report.to_json(), indent=2) if as_json else format_report(report))
        return 1
    model = _model(model_name) if model_name else None
    report = check_dataset(config, splits, PriorLayout.from_model(model) if model else None, model_name=model_name)
    fitted = fit_to_split(config, model) if fit and model is not None else None
    if as_json:
        values = report.to_json()
        if fitted is not None:
            values["prior_fit"] = fit_json(fitted, model)
        print(json.dumps(values, indent=2))
    else:
        print(format_report(report) + ("\n\n" + format_fit(fitted, model) if fitted is not None else ""))
    return 0 if report.ok else 1


def fit_to_split(config: DataConfig, model: SSD, split: str | None = None) -> PriorFit:
    """The model's default boxes fitted to the boxes (crowd regions aside) of ``split``, by default the train
    split, or the first the data config defines."""
    split = split or ("train" if "train" in config.splits else next(iter(config.splits)))
    boxes = normalized_boxes(build_dataset(config, split, skip_bad=True))
    return fit_priors(boxes, model.config, model.feature_sizes)


def normalized_boxes(dataset: DetectionDataset) -> Tensor:
    """``Tensor[M, 4]``: every object box of ``dataset`` (crowd regions aside) as a fraction of its image's width
    and height, i.e. as the model sees it after the warp to its square input."""
    table = dataset.box_table()
    objects = ~table["iscrowd"]
    height_width = table["image_size"][objects].double()
    scale = torch.stack([height_width[:, 1], height_width[:, 0]] * 2, dim=1)  # [M, 4]: W, H, W, H
    return table["boxes"][objects].double() / scale


def format_fit(fit: PriorFit, model: SSD) -> str:
    """The coverage of the model's default boxes and of the fitted ones, map by map, and the config values."""
    b, a = fit.before, fit.after
    lines = [
        f"default boxes fitted: {_percent(b.share_iou50)} -> {_percent(a.share_iou50)} of boxes have a prior with "
        f"IoU >= 0.5 (mean best IoU {b.mean_best_iou:.2f} -> {a.mean_best_iou:.2f}; positives per box "
        f"{b.mean_positives:.2f} -> {a.mean_positives:.2f})",
        f"  {'map':>7} {'IoU>=0.5 now':>13} {'fitted':>8} {'best map now':>13} {'fitted':>8}",
    ]
    for k, size in enumerate(model.feature_sizes):
        lines.append(
            f"  {f'{size}x{size}':>7} {_percent(b.per_map_iou50[k]):>13} {_percent(a.per_map_iou50[k]):>8} "
            f"{_percent(b.per_map_best[k]):>13} {_percent(a.per_map_best[k]):>8}"
        )
    values = fit.spec.config_values(model.config.input_size)
    lines += ["", "paste into the config (the maps, strides and boxes per location are unchanged):"]
    snippet = yaml.safe_dump({"model": values}, default_flow_style=None, sort_keys=False)
    lines += ["  " + line for line in snippet.splitlines()]
    return "\n".join(lines)


def fit_json(fit: PriorFit, model: SSD) -> dict[str, Any]:
    return {
        "before": asdict(fit.before),
        "after": asdict(fit.after),
        "model": fit.spec.config_values(model.config.input_size),
    }


def _model(model_name: str) -> SSD:
    """The model a ``--model`` names: a checkpoint file, a preset, or a run config (a file or a shipped name, such
    as ``shapes``), whose ``model:`` section is applied to its preset."""
    if Path(model_name).is_file() and Path(model_name).suffix.lower() in (".pt", ".pth"):
        return load(model_name)
    if model_name in PRESETS:
        return SSD(model_config(model_name))
    try:
        run = load_run_config(model_name)
    except DataError:
        raise SSDError(
            f"--model {model_name!r} is neither a checkpoint, a preset ({', '.join(sorted(PRESETS))}) nor a config "
            f"({', '.join(shipped_config_names())} or a .yaml file)"
        ) from None
    return SSD(model_config(run.preset, **run.model))
