"""torchvision's photometric distortion and min-IoU crop (the SSD paper's augmentation), computed faster.

The rule: the same random draws from torch's generator and the same results as ``T.RandomPhotometricDistort`` and
``T.RandomIoUCrop`` (the tests compare them), with the arithmetic vectorised. They pay on every training image of
a run with ``train.photometric`` and ``train.random_crop``; ``benchmarks/bench_speed_patches.py`` measures them
against torchvision's, and ``benchmarks/results.md`` holds the figures.
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F
from torch import Tensor
from torchvision import tv_tensors
from torchvision.ops import box_iou


def adjust_hue(image: Tensor, hue_factor: float) -> Tensor:
    """Rotate the HSV hue of float ``[3, H, W]`` RGB in 0..1 by ``hue_factor`` turns (-0.5..0.5).

    The same numbers as ``torchvision``'s ``adjust_hue`` (to 1e-6) in a few vectorised passes: V (max) and chroma
    (max - min) are kept, and each channel is rebuilt from the shifted hue sector.
    """
    maxc = image.amax(0)  # [H, W]
    chroma = maxc - image.amin(0)
    r, g, b = image.unbind(0)
    # 0/1 float masks of the channel holding the max (in-place arithmetic: torch.where and temporaries are slow)
    is_r = torch.eq(r, maxc, out=torch.empty_like(maxc))
    is_g = torch.eq(g, maxc, out=torch.empty_like(maxc)).mul_(1 - is_r)
    is_b = 1 - is_r - is_g
    hue6 = (is_r * (g - b)).add_(is_g * (b - r)).add_(is_b * (r - g)).div_(chroma.clamp_min(1e-12))
    hue6.add_(2 * is_g).add_(4 * is_b).add_(6 * hue_factor)  # hue in sixths of a turn, shifted
    k = image.new_tensor([5.0, 3.0, 1.0]).view(3, 1, 1) + hue6  # [3, H, W]
    k.sub_(torch.floor(k / 6).mul_(6))  # k mod 6
    return torch.minimum(k, 4 - k).clamp_(0, 1).mul_(-chroma).add_(maxc)


class PhotometricDistort(T.RandomPhotometricDistort):
    """torchvision's SSD photometric distortion: its ``make_params`` (the same random choices and order), with the
    image converted to float once for all steps (uint8 in, uint8 out) and the hue shift of ``adjust_hue``.

    ``transform`` reads the parameter names of torchvision 0.29's ``RandomPhotometricDistort.make_params``; the
    tests compare the output with torchvision's under the same seed, so a change there is caught.
    """

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        x = F.to_dtype(inpt.as_subclass(Tensor), torch.float32, scale=True)
        if params["brightness_factor"] is not None:
            x = F.adjust_brightness(x, params["brightness_factor"])
        if params["contrast_factor"] is not None and params["contrast_before"]:
            x = F.adjust_contrast(x, params["contrast_factor"])
        if params["saturation_factor"] is not None:
            x = F.adjust_saturation(x, params["saturation_factor"])
        if params["hue_factor"] is not None:
            x = adjust_hue(x, params["hue_factor"])
        if params["contrast_factor"] is not None and not params["contrast_before"]:
            x = F.adjust_contrast(x, params["contrast_factor"])
        if params["channel_permutation"] is not None:
            x = x[params["channel_permutation"]]
        return tv_tensors.wrap(F.to_dtype(x, inpt.dtype, scale=True), like=inpt)


class MinIoURandomCrop(T.RandomIoUCrop):
    """torchvision's ``RandomIoUCrop`` (the paper's sampler) with its trials drawn and tested in one batch.

    Each round picks an option (min IoU 0.0 = any, 0.1 ... 0.9, or 1.0 = keep the whole image), then draws
    ``trials`` crops of 0.3..1 of each side with aspect ratio 0.5..2, and takes the first one that holds at least
    one box centre (strictly inside) and overlaps such a box with IoU >= the option. Boxes whose centre is outside
    the crop are zeroed by the parent's ``transform``: follow with ``SanitizeBoundingBoxes`` to drop them.
    torchvision loops over the trials in Python; here one round's trials are one batch of tensor operations.
    """

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        boxes = next(x for x in flat_inputs if isinstance(x, tv_tensors.BoundingBoxes))
        orig_h, orig_w = boxes.canvas_size
        boxes_xyxy = F.convert_bounding_box_format(
            boxes.as_subclass(Tensor), boxes.format, tv_tensors.BoundingBoxFormat.XYXY
        ).float()  # [N, 4]
        centres = (boxes_xyxy[:, :2] + boxes_xyxy[:, 2:]) / 2  # [N, 2] x, y
        while True:
            min_iou = self.options[int(torch.randint(len(self.options), ()))]
            if min_iou >= 1.0:
                return {}
            scale = self.min_scale + (self.max_scale - self.min_scale) * torch.rand(self.trials, 2)
            size = (scale * torch.tensor([orig_w, orig_h])).floor()  # [T, 2] w, h (int() truncation)
            top_left = ((torch.tensor([orig_w, orig_h]) - size) * torch.rand(self.trials, 2)).floor()  # [T, 2]
            crops_xyxy = torch.cat([top_left, top_left + size], dim=1)  # [T, 4]
            aspect = size[:, 0] / size[:, 1]
            ok = (size > 0).all(1) & (aspect >= self.min_aspect_ratio) & (aspect <= self.max_aspect_ratio)
            inside = (  # [T, N]: box centre strictly inside the crop
                (centres[None, :, 0] > crops_xyxy[:, None, 0])
                & (centres[None, :, 0] < crops_xyxy[:, None, 2])
                & (centres[None, :, 1] > crops_xyxy[:, None, 1])
                & (centres[None, :, 1] < crops_xyxy[:, None, 3])
            )
            ious = box_iou(crops_xyxy, boxes_xyxy).masked_fill(~inside, -1.0)  # [T, N]
            ok &= inside.any(1) & (ious.amax(1) >= min_iou)
            if ok.any():
                t = int(ok.nonzero()[0])
                left, top, width, height = (int(v) for v in (*top_left[t], *size[t]))
                return dict(top=top, left=left, height=height, width=width, is_within_crop_area=inside[t])
