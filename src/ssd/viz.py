"""Detections drawn on images and augmentation grids, with ``torchvision.utils.draw_bounding_boxes``.

The labels use the DejaVu Sans font that matplotlib ships (works offline); plots are in ``ssd.plots``.
"""

from __future__ import annotations

import colorsys
import importlib.util
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.v2.functional as F
from torch import Tensor
from torchvision.io import write_jpeg, write_png
from torchvision.utils import draw_bounding_boxes, make_grid

from .data.transforms import AugmentedDataset
from .errors import SSDError

# matplotlib ships the DejaVu Sans font; found from its package folder, without importing matplotlib
FONT_PATH = str(
    Path(importlib.util.find_spec("matplotlib").origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
)
_GOLDEN_RATIO = 0.618033988749895


def class_colour(label: int) -> tuple[int, int, int]:
    """A bright RGB colour for a class; hues spread by the golden ratio, so neighbouring labels differ."""
    r, g, b = colorsys.hsv_to_rgb((label * _GOLDEN_RATIO) % 1.0, 0.85, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def draw_detections(
    image: Tensor,
    boxes_xyxy: Tensor,
    labels: Tensor,
    scores: Tensor | None = None,
    class_names: Sequence[str] | None = None,
    score_thresh: float = 0.0,
) -> Tensor:
    """Draw boxes ``[N, 4]`` (xyxy pixels) with "name score" text, one colour per class; ``-> uint8 [3, H, W]``.

    ``image`` is uint8 ``[3, H, W]`` or float in 0..1. Boxes scoring below ``score_thresh`` are left out.
    """
    if image.is_floating_point():
        image = F.to_dtype(image.clamp(0, 1), torch.uint8, scale=True)
    image, boxes_xyxy, labels = image.cpu(), boxes_xyxy.detach().cpu(), labels.cpu()
    if scores is not None:
        scores = scores.detach().cpu()
        keep = scores >= score_thresh
        boxes_xyxy, labels, scores = boxes_xyxy[keep], labels[keep], scores[keep]
    if len(boxes_xyxy) == 0:
        return image.clone()
    names = [class_names[int(c)] if class_names is not None else str(int(c)) for c in labels]
    texts = names if scores is None else [f"{name} {float(s):.2f}" for name, s in zip(names, scores)]
    colours = [class_colour(int(c)) for c in labels]
    side = min(image.shape[-2:])
    return draw_bounding_boxes(
        image,
        boxes_xyxy,
        labels=texts,
        colors=colours,
        width=max(2, round(side / 200)),
        font=FONT_PATH,
        font_size=max(10, round(side / 30)),
        label_colors="white",
        label_background_colors=colours,
        fill_labels=True,
    )


def save_image(image: Tensor, path: str | Path) -> None:
    """Write uint8 ``[3, H, W]`` to ``path`` as PNG or JPEG (chosen by the suffix); creates the folder."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".jpg", ".jpeg"):
        raise SSDError(f"{path}: cannot write images of type '{suffix}' (use .png, .jpg or .jpeg)")
    path.parent.mkdir(parents=True, exist_ok=True)
    image = image.detach().cpu()
    if suffix == ".png":
        write_png(image, str(path))
    else:
        write_jpeg(image, str(path), quality=95)


def save_augmentation_grid(
    dataset_or_samples: Any,
    transform: Callable[[Any], tuple[Tensor, dict[str, Any]]],
    path: str | Path,
    n: int = 16,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
) -> None:
    """Draw ``n`` augmented samples with their boxes into one PNG grid, to check the augmentation by eye.

    ``dataset_or_samples`` is a dataset (``load_sample(i)`` or ``[i]``) or a list of samples; ``transform`` a
    training transform (fixed output size, boxes in output pixels). With fewer samples than ``n``, samples
    repeat with fresh augmentations. Randomness comes from ``seed`` (via ``AugmentedDataset``); a bad sample is
    replaced by another, as in training.
    """
    data = AugmentedDataset(dataset_or_samples, transform, seed)
    if len(data) == 0:
        raise SSDError(f"{path}: no samples to draw")
    tiles = []
    for j in range(n):
        data.set_epoch(j // len(data))
        image, target = data[j % len(data)]
        tiles.append(draw_detections(image, target["boxes"], target["labels"], class_names=class_names))
    grid = make_grid(tiles, nrow=math.ceil(math.sqrt(n)), padding=4, pad_value=255)
    save_image(grid, path)
