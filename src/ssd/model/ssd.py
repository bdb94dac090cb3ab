"""The SSD network (pure tensors in, tensors out) and the detector around it (torchvision's convention)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from ..boxes import pad_boxes
from ..config import ModelConfig
from ..errors import SSDError
from ..images import check_image, resize_to_square
from ..loss import MultiBoxLoss
from ..postprocess import PostProcessSettings, postprocess
from .backbones import build_backbone
from .heads import MultiboxHead
from .priors import boxes_per_location, generate_priors


class SSDNet(nn.Module):
    """Backbone, extra layers and multibox heads: ``forward(x: Tensor[B, 3, S, S]) -> (loc [B, P, 4], conf [B, P, C])``.

    Same return type in train and eval mode, so it exports to ONNX and compiles cleanly.
    """

    def __init__(self, backbone: nn.Module, head: MultiboxHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.backbone(x))


def feature_map_sizes(make_backbone: Callable[[], nn.Module], input_size: int) -> list[int]:
    """Side of each source feature map, from a dry run of the backbone on the meta device (no compute)."""
    with torch.device("meta"):
        probe = make_backbone().eval()
        try:
            sources = probe(torch.empty(1, 3, input_size, input_size))
        except RuntimeError as exc:
            raise SSDError(f"input size {input_size} is too small for this network ({exc})") from None
    sizes = []
    for f in sources:
        if f.shape[-1] != f.shape[-2] or f.shape[-1] < 1:
            raise SSDError(
                f"input size {input_size} gives a feature map of {tuple(f.shape[-2:])}; choose a larger size"
            )
        sizes.append(int(f.shape[-1]))
    return sizes


class SSD(nn.Module):
    """The detector: takes a list of images ``[3, H, W]`` in 0..1 of any sizes.

    Train mode: ``model(images, targets) -> {"loc": ..., "conf": ...}`` with targets ``{"boxes": xyxy px, "labels"}``.
    Eval mode: ``model(images) -> [{"boxes", "scores", "labels"}]`` with boxes in pixels of each original image.
    Images are warped to ``input_size`` and the mean is subtracted inside, as in the paper.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        make_backbone = partial(build_backbone, config)
        self.feature_sizes = feature_map_sizes(make_backbone, config.input_size)
        if len(self.feature_sizes) != len(config.aspect_ratios):
            raise SSDError(
                f"model.backbone {config.backbone} with {len(config.extras)} extra layers gives "
                f"{len(self.feature_sizes)} feature maps, but model.aspect_ratios lists {len(config.aspect_ratios)}"
            )
        backbone = make_backbone()
        head = MultiboxHead(
            backbone.out_channels,
            boxes_per_location(config.aspect_ratios),
            config.num_classes,
            config.background_prior,
            separable=config.head == "separable",
            norm_layer=backbone.norm_layer,
            init_std=config.head_init_std,
        )
        self.net = SSDNet(backbone, head)

        min_sizes, max_sizes = config.prior_sizes()
        priors = generate_priors(
            self.feature_sizes, config.input_size, min_sizes, max_sizes, config.aspect_ratios, config.steps, config.clip
        )
        self.register_buffer("priors", priors, persistent=False)  # [P, 4] cx cy w h, normalised
        self.register_buffer("image_mean", torch.tensor(config.image_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(config.image_std).view(3, 1, 1), persistent=False)
        self.loss = MultiBoxLoss(
            priors, config.variances, config.iou_threshold, config.neg_pos_ratio, config.loc_weight
        )
        self.postprocess_settings = PostProcessSettings.from_config(config)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def preprocess(self, images: list[Tensor]) -> Tensor:
        """Warp every image to ``input_size`` and normalise: ``Tensor[B, 3, S, S]``."""
        batch = resize_to_square(images, self.config.input_size)
        return (batch * 255.0 - self.image_mean) / self.image_std

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        for img in images:
            check_image(img)
        image_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        x = self.preprocess(images)
        loc, conf = self.net(x)
        if self.training:
            if targets is None:
                raise SSDError("in train mode the model needs targets (call model.eval() for detections)")
            return self.compute_loss(loc, conf, targets, image_sizes)
        return postprocess(loc, conf, self.priors, self.config.variances, image_sizes, self.postprocess_settings)

    def compute_loss(
        self, loc: Tensor, conf: Tensor, targets: list[dict[str, Tensor]], image_sizes: list[tuple[int, int]]
    ) -> dict[str, Tensor]:
        """MultiBox loss against targets in pixels of the images they belong to."""
        boxes_list, labels_list = [], []
        for target, (h, w) in zip(targets, image_sizes):
            boxes = target["boxes"].to(loc.device, torch.float32)
            boxes_list.append(boxes / boxes.new_tensor([w, h, w, h]))
            labels_list.append(target["labels"].to(loc.device))
        gt_xyxy, gt_labels, gt_valid = pad_boxes(boxes_list, labels_list)
        return self.loss(loc, conf, gt_xyxy, gt_labels, gt_valid)
