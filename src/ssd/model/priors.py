"""Default boxes (priors): one generator for every preset, SSD300, SSD512 and torchvision's layout."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def boxes_per_location(aspect_ratios: Sequence[Sequence[float]]) -> list[int]:
    """Default boxes per feature-map cell: two squares plus two boxes (r and 1/r) per aspect ratio."""
    return [2 + 2 * len(ratios) for ratios in aspect_ratios]


def prior_shapes(min_size: float, max_size: float, ratios: Sequence[float], clip: bool) -> Tensor:
    """Widths and heights ``Tensor[k, 2]`` of one cell's boxes, in the order of the original Caffe code.

    Order: square of ``min_size``, square of ``sqrt(min_size * max_size)``, then ``(r, 1/r)`` per ratio.
    With ``clip`` the widths and heights are limited to 1 (torchvision's convention).
    """
    shapes = [(min_size, min_size), (math.sqrt(min_size * max_size),) * 2]
    for r in ratios:
        w, h = min_size * math.sqrt(r), min_size / math.sqrt(r)
        shapes += [(w, h), (h, w)]
    wh = torch.tensor(shapes, dtype=torch.float64)
    return wh.clamp(0.0, 1.0) if clip else wh


def generate_priors(
    feature_sizes: Sequence[int],
    input_size: int,
    min_sizes: Sequence[float],
    max_sizes: Sequence[float],
    aspect_ratios: Sequence[Sequence[float]],
    steps: Sequence[float] | None = None,
    clip: bool = False,
) -> Tensor:
    """All default boxes ``Tensor[P, 4]`` as (cx, cy, w, h) normalised to the input side.

    ``min_sizes``/``max_sizes`` are fractions of the input side. Cell centres are ``(j + 0.5) * step / input_size``;
    without ``steps`` the step is ``input_size / feature_size``. Boxes are ordered map by map, then row, column
    and box, which is the order the heads produce their outputs in.
    """
    all_priors = []
    for k, size in enumerate(feature_sizes):
        step = steps[k] if steps is not None else input_size / size
        centres = (torch.arange(size, dtype=torch.float64) + 0.5) * step / input_size
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        wh = prior_shapes(min_sizes[k], max_sizes[k], aspect_ratios[k], clip)  # [k, 2]
        cells = torch.stack([cx.reshape(-1), cy.reshape(-1)], dim=1)  # [S*S, 2]
        num_cells, num_shapes = cells.shape[0], wh.shape[0]
        priors = torch.cat(
            [cells[:, None, :].expand(num_cells, num_shapes, 2), wh[None].expand(num_cells, num_shapes, 2)], dim=2
        )
        all_priors.append(priors.reshape(-1, 4))
    return torch.cat(all_priors).to(torch.float32)
