"""The paper's training augmentation, the evaluation warp, and reproducible randomness for both.

Design, in three pieces:

- ``TrainTransform`` and ``EvalTransform`` are plain callables ``sample -> (image, target)`` built from
  ``torchvision.transforms.v2`` with ``tv_tensors.BoundingBoxes``, so boxes follow every geometric step.
  They draw their random numbers from torch's global CPU generator, as torchvision's transforms do.
- ``AugmentedDataset(dataset, transform, seed)`` wraps a dataset of samples and runs the transform for item
  ``i`` with that generator seeded from ``(seed, epoch, i)`` (``seeded`` / ``derive_seed``), then restores the
  generator. An item's augmentation is thus a function of (seed, epoch, index) only: the same with 0 or 8
  loader workers, in any order, and after resuming a run part-way through an epoch.
- The epoch lives in a shared-memory tensor, so ``set_epoch`` in the main process reaches persistent
  loader workers too (they hold copies of the dataset made when they started).

The photometric distortion and the min-IoU crop are torchvision's, computed faster (``ssd.data.fast_augment``:
same random draws, same results). Warps are bilinear without antialiasing, as in the original Caffe SSD and
torchvision's SSD.

A bad sample (the base dataset's ``load_sample`` raises ``DataError``, or ``dataset[i]`` returns ``None``) is
logged once and replaced, wherever it is drawn, by another sample chosen from ``(seed, epoch, i)``, augmented as
item ``i`` would have been: batches stay full (a batch-norm model never gets a batch of one) and the run stays
a function of its seed. A base dataset with ``skip_bad = False`` has its ``DataError`` raised instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..errors import DataError, SSDError
from ..images import resize_to_square
from .fast_augment import MinIoURandomCrop, PhotometricDistort
from .unreadable import UnreadableSamples

MAX_SUBSTITUTE_DRAWS = 64  # candidates tried for an unreadable sample before the dataset is called unreadable
_SUBSTITUTE_STREAM = 3  # keeps the substitutes' draws apart from the sampler's and the workers' streams

Target = dict[str, Any]


class SampleLike(Protocol):
    """What the transforms read from a sample (``ssd.data.dataset.Sample`` has these fields)."""

    image: Tensor  # uint8 [3, H, W] RGB
    boxes: Tensor  # float32 [N, 4] xyxy pixels; the full image is [0, 0, W, H]
    labels: Tensor  # int64 [N], 1..C-1
    difficult: Tensor  # bool [N]
    iscrowd: Tensor  # bool [N]
    image_id: int | str
    path: str


def derive_seed(*keys: int) -> int:
    """A 64-bit seed mixed from non-negative integers such as ``(seed, epoch, index)``; the same on every machine."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0])


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded with ``seed``, then restore the generator's previous state."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def _orig_size(image: Tensor) -> Tensor:
    return torch.tensor(image.shape[-2:], dtype=torch.int64)  # [2] = H, W


def aligned_fields(data: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """The per-box tensors that ``SanitizeBoundingBoxes`` must filter together with the boxes."""
    return data["labels"], data["difficult"]


class TrainTransform:
    """SSD training augmentation (paper, sec. 2.2; torchvision's SSD reference recipe).

    Photometric distortion (brightness, contrast, saturation, hue, channel order), zoom-out up to 4x on a canvas
    filled with the mean colour (p=0.5), min-IoU random crop (whole image or min IoU 0.1/0.3/0.5/0.7/0.9/any;
    a box survives only if its centre lies inside the crop), horizontal flip (p=0.5), then a warp to
    ``input_size`` x ``input_size``. Boxes left narrower or shorter than a pixel after the crop or the warp are
    dropped with their labels and difficult flags (an image already at the input size is neither warped nor
    checked: its boxes are the dataset's); crowd boxes are removed first. Randomness comes from torch's
    global CPU generator: wrap the dataset in ``AugmentedDataset`` to make it a function of (seed, epoch, index).

    ``__call__(sample) -> (image float32 [3, S, S] in 0..1, target)`` where ``target`` holds ``boxes`` (float32
    [N, 4] xyxy pixels of the S x S output), ``labels`` (int64 [N]), ``difficult`` (bool [N]), ``image_id`` and
    ``orig_size`` (int64 [2] = original H, W).
    """

    def __init__(
        self,
        input_size: int,
        mean_rgb: tuple[float, float, float] = (123.0, 117.0, 104.0),
        *,
        zoom_out_max: float = 4.0,
        random_crop: bool = True,
        photometric: bool = True,
    ) -> None:
        self.input_size = input_size
        self.mean_rgb = tuple(mean_rgb)
        keep_valid = T.SanitizeBoundingBoxes(labels_getter=aligned_fields)
        # zoom_out_max=1, random_crop=False or photometric=False lighten the recipe (e.g. for data whose objects
        # are already small, or synthetic data plentiful enough that the CPU is better spent on the model)
        self.photometric = PhotometricDistort(p=0.5) if photometric else None
        self.zoom_out = T.RandomZoomOut(
            fill=[int(round(m)) for m in mean_rgb],
            side_range=(1.0, max(zoom_out_max, 1.0)),
            p=0.5 if zoom_out_max > 1 else 0.0,
        )
        self.crop = T.Compose([MinIoURandomCrop(), keep_valid]) if random_crop else None  # sanitize removes lost boxes
        self.flip = T.RandomHorizontalFlip(p=0.5)
        warp = T.Resize((input_size, input_size), interpolation=T.InterpolationMode.BILINEAR, antialias=False)
        self.resize = T.Compose([warp, keep_valid])

    def __call__(self, sample: SampleLike) -> tuple[Tensor, Target]:
        keep = ~sample.iscrowd
        image = sample.image
        data = {
            "image": tv_tensors.Image(image),
            "boxes": tv_tensors.BoundingBoxes(
                sample.boxes[keep], format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=tuple(image.shape[-2:])
            ),
            "labels": sample.labels[keep],
            "difficult": sample.difficult[keep],
        }
        if self.photometric is not None:
            data = self.photometric(data)
        data = self.zoom_out(data)
        if self.crop is not None and len(data["boxes"]):  # RandomIoUCrop needs a box to measure overlap against
            data = self.crop(data)
        data = self.flip(data)
        if tuple(data["image"].shape[-2:]) != (self.input_size, self.input_size):  # the warp, unless already there
            data = self.resize(data)
        out = F.to_dtype(data["image"].as_subclass(Tensor), torch.float32, scale=True)
        target = {
            "boxes": data["boxes"].as_subclass(Tensor).to(torch.float32),
            "labels": data["labels"],
            "difficult": data["difficult"],
            "image_id": sample.image_id,
            "orig_size": _orig_size(image),
        }
        return out, target

    def __repr__(self) -> str:
        return (
            f"TrainTransform(input_size={self.input_size}, mean_rgb={self.mean_rgb}, "
            f"zoom_out_max={self.zoom_out.side_range[1]}, random_crop={self.crop is not None}, "
            f"photometric={self.photometric is not None})"
        )


class EvalTransform:
    """Evaluation preprocessing: warp the image to ``input_size`` x ``input_size``; nothing random.

    ``__call__(sample) -> (image float32 [3, S, S] in 0..1, target)``. The target stays in the ORIGINAL image's
    pixels, because metrics are computed there: ``boxes`` (xyxy), ``labels``, ``difficult``, ``iscrowd``,
    ``image_id`` and ``orig_size`` (int64 [2] = H, W). The model sees an S x S image, so its detections come back
    in S x S pixels; the evaluator rescales them by ``(W / S, H / S)`` to the original size.
    """

    def __init__(self, input_size: int) -> None:
        self.input_size = input_size

    def __call__(self, sample: SampleLike) -> tuple[Tensor, Target]:
        target = {
            "boxes": sample.boxes,
            "labels": sample.labels,
            "difficult": sample.difficult,
            "iscrowd": sample.iscrowd,
            "image_id": sample.image_id,
            "orig_size": _orig_size(sample.image),
        }
        image = F.to_dtype(sample.image, torch.float32, scale=True)
        return resize_to_square([image], self.input_size)[0], target

    def __repr__(self) -> str:
        return f"EvalTransform(input_size={self.input_size})"


class AugmentedDataset(Dataset):
    """``dataset`` with ``transform`` applied, item ``i`` under a generator seeded from ``(seed, epoch, i)``.

    ``__getitem__(i) -> (image, target)``, always: a sample that cannot be read (``load_sample`` raised
    ``DataError``, or ``dataset[i]`` returned ``None``) is replaced by another one drawn from ``(seed, epoch, i)``
    (``substitute``) and augmented under item ``i``'s seed, so batches stay full and a run stays reproducible
    and resumable. ``unreadable`` names the samples found bad, ``num_replaced`` counts the replacements (both
    across loader workers). ``set_epoch`` reaches loader workers, persistent ones included.
    """

    def __init__(self, dataset: Any, transform: Callable[[SampleLike], tuple[Tensor, Target]], seed: int = 0) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.unreadable = UnreadableSamples(len(dataset))
        self._replaced = torch.zeros(len(dataset), dtype=torch.int32).share_memory_()  # [len] replacements per item

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    @property
    def num_replaced(self) -> int:
        """How many items were served by a substitute so far (across all loader workers)."""
        return int(self._replaced.sum())

    def unreadable_paths(self) -> list[str]:
        """The samples found unreadable so far: their image paths when the dataset has ``paths``, else indices."""
        paths = getattr(self.dataset, "paths", None)
        return [str(paths[i]) if paths is not None else f"sample {i}" for i in self.unreadable.indices()]

    def _load(self, index: int) -> SampleLike | None:
        """Sample ``index``, or None (recorded in ``unreadable``) when it cannot be read and ``skip_bad`` allows."""
        load_sample = getattr(self.dataset, "load_sample", None)
        if load_sample is None:
            sample = self.dataset[index]
            if sample is None:
                self.unreadable.mark(index, f"sample {index} of the dataset is missing: replaced by another one")
            return sample
        try:
            return load_sample(index)
        except DataError as err:
            if not getattr(self.dataset, "skip_bad", True):
                raise
            self.unreadable.mark(index, f"{err}: replaced by another image of the epoch wherever it is drawn")
            return None

    def substitute(self, index: int, epoch: int) -> tuple[int, SampleLike]:
        """``(j, sample j)``: the first readable of the candidates drawn from ``(seed, epoch, index)`` to replace
        unreadable item ``index``; the same every time, whatever was loaded before."""
        for attempt in range(MAX_SUBSTITUTE_DRAWS):
            candidate = derive_seed(self.seed, epoch, index, attempt, _SUBSTITUTE_STREAM) % len(self)
            if candidate == index or candidate in self.unreadable:
                continue
            sample = self._load(candidate)
            if sample is not None:
                return candidate, sample
        raise SSDError(
            f"sample {index} cannot be read and neither could any of the {MAX_SUBSTITUTE_DRAWS} samples drawn to "
            f"replace it ({len(self.unreadable)} of {len(self)} found unreadable): check the images with "
            "`ssd check-data`"
        )

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        epoch = self.epoch
        sample = self._load(index)
        if sample is None:
            _, sample = self.substitute(index, epoch)
            self._replaced[index] += 1
        with seeded(derive_seed(self.seed, epoch, index)):
            return self.transform(sample)
