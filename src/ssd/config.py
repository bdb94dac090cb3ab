"""Configuration dataclasses, built from YAML files and ``key=value`` overrides.

Unknown keys are errors, so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import SSDError


@dataclass
class ModelConfig:
    """Everything needed to rebuild an SSD: architecture, default boxes, loss and inference settings.

    Sizes (``min_sizes``, ``max_sizes``, ``steps``) are in pixels of the network input;
    ``scales`` is the alternative spelling as fractions of the input side (K + 1 values for K maps).
    """

    name: str = "ssd300_vgg16"
    num_classes: int = 21  # including background at index 0
    class_names: list[str] | None = None
    input_size: int = 300
    width: float = 1.0  # channel multiplier of the VGG base and the extra layers (1.0 = the paper)
    batch_norm: bool = False  # batch norm after every conv of the base (not in the paper; helps training from scratch)
    # extra feature layers after conv7: [mid_channels, out_channels, kernel, stride, padding]
    extras: list[list[int]] = field(
        default_factory=lambda: [[256, 512, 3, 2, 1], [128, 256, 3, 2, 1], [128, 256, 3, 1, 0], [128, 256, 3, 1, 0]]
    )
    l2norm_scale: float = 20.0
    # default boxes
    min_sizes: list[float] | None = field(default_factory=lambda: [30, 60, 111, 162, 213, 264])
    max_sizes: list[float] | None = field(default_factory=lambda: [60, 111, 162, 213, 264, 315])
    scales: list[float] | None = None
    steps: list[float] | None = field(default_factory=lambda: [8, 16, 32, 64, 100, 300])
    aspect_ratios: list[list[float]] = field(default_factory=lambda: [[2], [2, 3], [2, 3], [2, 3], [2], [2]])
    clip: bool = False
    variances: list[float] = field(default_factory=lambda: [0.1, 0.1, 0.2, 0.2])
    # preprocessing, on the 0..255 scale: (255 * x - mean) / std
    image_mean: list[float] = field(default_factory=lambda: [123.0, 117.0, 104.0])
    image_std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    # training: matching and loss
    iou_threshold: float = 0.5
    neg_pos_ratio: float = 3.0
    loc_weight: float = 1.0
    # inference
    score_thresh: float = 0.01
    nms_thresh: float = 0.45
    topk_candidates: int = 400
    detections_per_img: int = 200

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check that the settings are consistent; raise SSDError naming the offending key."""
        k = len(self.aspect_ratios)
        if self.num_classes < 2:
            raise SSDError(f"model.num_classes must be >= 2 (background + at least one class), got {self.num_classes}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise SSDError(
                f"model.class_names has {len(self.class_names)} names but num_classes is {self.num_classes}"
                " (the first name is the background)"
            )
        if self.scales is None and (self.min_sizes is None or self.max_sizes is None):
            raise SSDError("model: give either scales or both min_sizes and max_sizes")
        if self.scales is not None and len(self.scales) != k + 1:
            raise SSDError(f"model.scales needs {k + 1} values for {k} feature maps, got {len(self.scales)}")
        sized = ["steps"] + (["min_sizes", "max_sizes"] if self.scales is None else [])
        for key in sized:
            value = getattr(self, key)
            if value is not None and len(value) != k:
                raise SSDError(f"model.{key} needs {k} values (one per feature map), got {len(value)}")
        if len(self.extras) != k - 2:
            raise SSDError(f"model.extras needs {k - 2} layers for {k} feature maps, got {len(self.extras)}")
        if len(self.variances) != 4 or len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise SSDError("model.variances needs 4 values and image_mean/image_std 3 each")
        if self.width <= 0:
            raise SSDError(f"model.width must be positive, got {self.width}")

    def prior_sizes(self) -> tuple[list[float], list[float]]:
        """Min and max default-box sizes per feature map, as fractions of the input side."""
        if self.scales is not None:
            return list(self.scales[:-1]), list(self.scales[1:])
        assert self.min_sizes is not None and self.max_sizes is not None
        return [s / self.input_size for s in self.min_sizes], [s / self.input_size for s in self.max_sizes]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "model config") -> "ModelConfig":
        return from_dict(cls, values, source)


def from_dict(cls: type, values: dict[str, Any], source: str) -> Any:
    """Build dataclass ``cls`` from ``values``; unknown keys raise SSDError naming ``source``."""
    if not isinstance(values, dict):
        raise SSDError(f"{source}: expected a mapping of keys to values, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SSDError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise SSDError(f"{source}: {exc}") from None
