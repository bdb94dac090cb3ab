"""Augmentation invariants on synthetic samples: geometry, label alignment, the crop's centre rule, reproducibility."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as nnf
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F
from torch import Tensor
from torchvision import tv_tensors

from data_helpers import make_sample
from ssd.data.dataset import Sample
from ssd.data.transforms import (
    AugmentedDataset,
    EvalTransform,
    TrainTransform,
    derive_seed,
    seeded,
)
from ssd.errors import DataError, SSDError

# small images: intra-op threads only add overhead (and stall on a busy machine), as in loader workers
pytestmark = pytest.mark.usefixtures("one_thread")


# label k is painted in COLOURS[k]; boxes do not overlap and each label is used once
COLOURS = {1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255), 4: (255, 255, 0), 5: (0, 255, 255)}
BOXES = torch.tensor(
    [[8.0, 10.0, 40.0, 50.0], [50.0, 6.0, 90.0, 30.0], [100.0, 40.0, 150.0, 110.0], [10.0, 70.0, 60.0, 115.0]]
)


def painted_sample(height: int = 120, width: int = 160, crowd_label: int | None = None) -> Sample:
    """Black image with each box filled in its label's colour; difficult = even label; optional crowd box."""
    boxes, labels = BOXES.clone(), torch.tensor([1, 2, 3, 4])
    iscrowd = torch.zeros(4, dtype=torch.bool)
    if crowd_label is not None:
        boxes = torch.cat([boxes, torch.tensor([[60.0, 60.0, 95.0, 100.0]])])
        labels = torch.cat([labels, torch.tensor([crowd_label])])
        iscrowd = torch.cat([iscrowd, torch.tensor([True])])
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    for box, label in zip(boxes.long().tolist(), labels.tolist()):
        image[:, box[1] : box[3], box[0] : box[2]] = torch.tensor(COLOURS[label], dtype=torch.uint8)[:, None, None]
    return make_sample(image, boxes, labels, labels % 2 == 0, iscrowd, image_id=7)


def test_train_output_invariants_over_many_draws():
    size = 64
    data = AugmentedDataset([painted_sample(crowd_label=5)] * 300, TrainTransform(size), seed=3)
    survivors = 0
    for i in range(len(data)):
        image, target = data[i]
        boxes, labels = target["boxes"], target["labels"]
        assert image.shape == (3, size, size) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert boxes.dtype == torch.float32 and labels.dtype == torch.int64 and boxes.shape == (len(labels), 4)
        assert (boxes >= 0).all() and (boxes <= size).all()
        assert ((boxes[:, 2:] - boxes[:, :2]) >= 1).all()  # no degenerate box
        assert len(set(labels.tolist())) == len(labels) and 5 not in labels.tolist()  # crowd box removed
        assert torch.equal(target["difficult"], labels % 2 == 0)  # flags stay with their boxes
        assert target["image_id"] == 7 and target["orig_size"].tolist() == [120, 160]
        survivors += len(labels)
    assert survivors > 300  # the crop keeps at least one box, usually more


def test_train_boxes_keep_their_content_and_zoom_fill_is_the_mean():
    """Without colour distortion, each output box covers its own label's colour and the zoom-out fill is the mean."""
    size = 96
    mean = (0, 0, 0)  # the painted image's background, so any pixel outside the boxes is black
    transform = TrainTransform(size, mean_rgb=mean)
    transform.photometric = T.Identity()
    data = AugmentedDataset([painted_sample()] * 200, transform, seed=1)
    zoomed_once = False
    for i in range(len(data)):
        image, target = data[i]
        pixels = F.to_dtype(image, torch.uint8, scale=True).int()
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            x1, y1, x2, y2 = box
            inner = pixels[:, int(y1) + 2 : int(y2) - 1, int(x1) + 2 : int(x2) - 1]
            if inner.numel() == 0:
                continue
            colour = torch.tensor(COLOURS[label]).view(3, 1, 1)
            assert (inner - colour).abs().max() <= 1, f"item {i}: box {box} of label {label} covers another colour"
        zoomed_once |= bool((pixels.sum(0) == 0).float().mean() > 0.7)
    assert zoomed_once  # some draws zoomed out far enough to be mostly fill


def test_zoom_out_pads_with_the_mean_and_boxes_follow_the_image():
    mean = (123, 117, 104)
    zoom_out = TrainTransform(64, mean_rgb=mean).zoom_out
    image = torch.full((3, 30, 40), 10, dtype=torch.uint8)
    whole = tv_tensors.BoundingBoxes(torch.tensor([[0.0, 0.0, 40.0, 30.0]]), format="XYXY", canvas_size=(30, 40))
    grown = 0
    for s in range(40):
        with seeded(s):
            out, box = zoom_out(tv_tensors.Image(image), whole)
        h, w = out.shape[-2:]
        assert h <= 4 * 30 and w <= 4 * 40
        x1, y1, x2, y2 = box[0].long().tolist()
        assert (x2 - x1, y2 - y1) == (40, 30)
        inside = torch.zeros(h, w, dtype=torch.bool)
        inside[y1:y2, x1:x2] = True
        assert (out[:, inside] == 10).all()
        assert (out[:, ~inside] == torch.tensor(mean, dtype=torch.uint8)[:, None]).all()
        grown += (h, w) != (30, 40)
    assert 10 < grown < 30  # applied with p = 0.5


def test_horizontal_flip_mirrors_boxes():
    flip = TrainTransform(64).flip
    boxes = tv_tensors.BoundingBoxes(BOXES, format="XYXY", canvas_size=(120, 160))
    image = tv_tensors.Image(painted_sample().image)
    flipped = 0
    for s in range(20):
        with seeded(s):
            out_image, out_boxes = flip(image, boxes)
        if torch.equal(out_image, image):
            assert torch.equal(out_boxes, boxes)
        else:
            flipped += 1
            mirrored = torch.stack([160 - BOXES[:, 2], BOXES[:, 1], 160 - BOXES[:, 0], BOXES[:, 3]], dim=1)
            assert torch.equal(out_boxes.as_subclass(Tensor), mirrored)
            assert torch.equal(out_image, image.flip(-1))
    assert 0 < flipped < 20


def test_train_transform_handles_an_image_without_boxes():
    empty = make_sample(
        torch.zeros(3, 50, 70, dtype=torch.uint8),
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.int64),
        torch.zeros(0, dtype=torch.bool),
        torch.zeros(0, dtype=torch.bool),
    )
    data = AugmentedDataset([empty] * 10, TrainTransform(32), seed=0)
    for i in range(len(data)):
        image, target = data[i]
        assert image.shape == (3, 32, 32) and target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_eval_transform_only_warps():
    sample = painted_sample(crowd_label=5)
    image, target = EvalTransform(100)(sample)
    expected = nnf.interpolate(sample.image[None] / 255, size=(100, 100), mode="bilinear", align_corners=False)[0]
    assert image.shape == (3, 100, 100) and torch.allclose(image, expected, atol=1e-6)  # what SSD.preprocess does
    for key in ("boxes", "labels", "difficult", "iscrowd"):
        assert torch.equal(target[key], getattr(sample, key))  # original pixels, crowd boxes kept
    assert target["orig_size"].tolist() == [120, 160] and target["image_id"] == 7


def test_augmentation_is_a_function_of_seed_epoch_and_index():
    data = AugmentedDataset([painted_sample()] * 4, TrainTransform(48), seed=5)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = [data[i] for i in range(4)]
    assert torch.equal(torch.random.get_rng_state(), before)  # the global generator is left alone
    again = [data[i] for i in (3, 2, 1, 0)][::-1]  # any order
    for (a, ta), (b, tb) in zip(first, again):
        assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"])
    assert not all(torch.equal(first[0][0], first[i][0]) for i in (1, 2, 3))  # indices differ
    data.set_epoch(1)
    assert data.epoch == 1 and not all(torch.equal(first[i][0], data[i][0]) for i in range(4))  # epochs differ
    other = AugmentedDataset([painted_sample()] * 4, TrainTransform(48), seed=6)
    assert not all(torch.equal(first[i][0], other[i][0]) for i in range(4))  # seeds differ


def test_derive_seed_is_stable():
    assert derive_seed(0, 0, 0) == derive_seed(0, 0, 0) != derive_seed(0, 0, 1)
    assert derive_seed(1, 2, 3) == 12997252459554536576  # fixed: resumed runs must draw the same numbers


class BadSamples:
    """A dataset whose odd indices cannot be loaded; sample ``k`` has image id ``k``."""

    skip_bad = True

    def __init__(self, n: int) -> None:
        self.n = n
        self.paths = [f"img{k}.jpg" for k in range(n)]

    def __len__(self) -> int:
        return self.n

    def load_sample(self, index: int) -> Sample:
        if index % 2:
            raise DataError(self.paths[index], "cannot decode image")
        sample = painted_sample()
        sample.image_id = index
        return sample


def test_an_unreadable_sample_is_replaced_by_a_readable_one_augmented_as_itself(caplog: pytest.LogCaptureFixture):
    transform = TrainTransform(32)
    data = AugmentedDataset(BadSamples(8), transform, seed=3)
    with caplog.at_level(logging.WARNING):
        items = [data[i] for i in (0, 1, 2, 3, 1, 3)]
    assert data.num_replaced == 4 and {1, 3} <= set(data.unreadable.indices())
    assert set(data.unreadable.indices()) <= {1, 3, 5, 7}  # candidates that were unreadable too are recorded
    assert data.unreadable_paths()[:1] == ["img1.jpg"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == len(data.unreadable) and "img1.jpg: cannot decode image: replaced" in warnings[0]
    for position, index in enumerate((1, 3)):
        substitute, sample = data.substitute(index, epoch=0)
        assert substitute % 2 == 0 and sample.image_id == substitute
        with seeded(derive_seed(3, 0, index)):  # the substitute is augmented under the slot's own seed
            expected = transform(sample)
        for got in (items[1 + 2 * position], items[4 + position]):  # the same every time the slot is drawn
            torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
            torch.testing.assert_close(got[1]["boxes"], expected[1]["boxes"], rtol=0, atol=0)
    other_epoch = {data.substitute(1, epoch)[0] for epoch in range(12)}
    assert len(other_epoch) > 1  # a new draw each epoch
    strict = BadSamples(4)
    strict.skip_bad = False
    with pytest.raises(DataError, match="img1.jpg"):
        AugmentedDataset(strict, EvalTransform(16))[1]


def test_a_dataset_returning_none_is_replaced_and_one_with_nothing_readable_is_an_error():
    data = AugmentedDataset([painted_sample(), None], EvalTransform(16))
    assert data[1][0].shape == (3, 16, 16) and data.unreadable.indices() == [1] and data.num_replaced == 1
    with pytest.raises(SSDError, match="neither could any of the 64 samples drawn"):
        AugmentedDataset([None, None, None], EvalTransform(16))[0]


def test_light_recipe_is_only_flip_and_warp():
    """photometric, zoom-out and crop switched off: the output is the warp of the image or of its mirror
    (to one grey level: the train warp runs on uint8, the eval warp on floats)."""
    transform = TrainTransform(64, zoom_out_max=1.0, random_crop=False, photometric=False)
    sample = painted_sample()
    warped, _ = EvalTransform(64)(sample)
    scale = torch.tensor([64 / 160, 64 / 120] * 2)
    flips = 0
    for s in range(12):
        with seeded(s):
            image, target = transform(sample)
        if (image - warped).abs().max() <= 1 / 255 + 1e-6:
            torch.testing.assert_close(target["boxes"], BOXES * scale)
        else:
            flips += 1
            torch.testing.assert_close(image, warped.flip(-1), atol=1 / 255 + 1e-6, rtol=0)
            mirrored = torch.stack([160 - BOXES[:, 2], BOXES[:, 1], 160 - BOXES[:, 0], BOXES[:, 3]], dim=1)
            torch.testing.assert_close(target["boxes"], mirrored * scale)
        assert target["labels"].tolist() == [1, 2, 3, 4]
    assert 0 < flips < 12
    assert "photometric=False" in repr(transform)


def test_an_image_already_at_the_input_size_is_not_warped():
    """At the input size the light recipe skips the (identity) warp: pixels and boxes come out exactly,
    or exactly mirrored, and a box under a pixel wide from the dataset is not dropped by a warp that never ran."""
    sample = painted_sample(height=120, width=120)
    thin = torch.tensor([[20.0, 20.0, 20.5, 60.0]])
    sample = make_sample(
        sample.image,
        torch.cat([sample.boxes[:1], thin]),
        torch.tensor([1, 2]),
        torch.tensor([False, False]),
        torch.tensor([False, False]),
        image_id=7,
    )
    transform = TrainTransform(120, zoom_out_max=1.0, random_crop=False, photometric=False)
    as_float = sample.image.float() / 255
    seen = set()
    for s in range(8):
        with seeded(s):
            image, target = transform(sample)
        mirrored = not torch.equal(image, as_float)
        seen.add(mirrored)
        expected_boxes = sample.boxes
        if mirrored:
            assert torch.equal(image, as_float.flip(-1))
            expected_boxes = torch.stack(
                [120 - sample.boxes[:, 2], sample.boxes[:, 1], 120 - sample.boxes[:, 0], sample.boxes[:, 3]], 1
            )
        assert torch.equal(target["boxes"], expected_boxes)
        assert target["labels"].tolist() == [1, 2]
    assert seen == {False, True}
