"""The synthetic shapes dataset: determinism, disjoint splits, honest boxes, border cuts, speed and skipping."""

from __future__ import annotations

import filecmp
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ssd.data import build_dataset, load_data_config
from ssd.data.shapes import MAX_OBJECTS, SHAPES_CLASSES, SIZE_RANGE, generate_shapes, render_image, shape_mask
from ssd.errors import SSDError

SMALL = dict(num_train=24, num_val=6, num_test=6, image_size=96)


@pytest.fixture(scope="module")
def shapes_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes"), **SMALL, seed=3, num_workers=1)


def test_the_voc_reader_reads_it_with_sane_objects(shapes_yaml: Path) -> None:
    config = load_data_config(shapes_yaml)
    assert config.format == "voc" and config.names == list(SHAPES_CLASSES) and len(SHAPES_CLASSES) >= 5
    counts, border_cut, classes = [], 0, set()
    for split, n in (("train", 24), ("val", 6), ("test", 6)):
        dataset = build_dataset(config, split, skip_bad=False)
        assert len(dataset) == n and dataset.problems == []
        for i in range(n):
            sample = dataset[i]
            assert sample.image.shape == (3, 96, 96)
            boxes = sample.boxes
            counts.append(len(boxes))
            classes.update(sample.labels.tolist())
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 96).all()
            assert (boxes[:, 2:] > boxes[:, :2]).all()
            border_cut += int(((boxes[:, :2] == 0) | (boxes[:, 2:] == 96)).any(dim=1).sum())
    assert 1 <= min(counts) and max(counts) <= MAX_OBJECTS
    assert len(set(counts)) >= 4  # the number of objects varies
    assert border_cut >= 3
    assert len(classes) == len(SHAPES_CLASSES)  # 36 images show every class


def test_splits_are_disjoint(shapes_yaml: Path) -> None:
    config = load_data_config(shapes_yaml)
    datasets = {s: build_dataset(config, s) for s in ("train", "val", "test")}
    ids = [set(d.image_ids) for d in datasets.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    # different seed streams: the first image of each split differs
    first = [d[0].image.float() for d in datasets.values()]
    assert all((a - b).abs().mean() > 10 for a, b in ((first[0], first[1]), (first[0], first[2]), (first[1], first[2])))


def test_same_seed_gives_identical_files_whatever_the_workers(shapes_yaml: Path, tmp_path: Path) -> None:
    again = generate_shapes(tmp_path, **SMALL, seed=3, num_workers=2)
    a, b = shapes_yaml.parent / "SHAPES", again.parent / "SHAPES"
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len(names) == 2 * 36 + 3 + 1  # images, annotations, split files, manifest
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(n) for n in names], shallow=False)
    assert mismatch == [] and errors == []
    other = generate_shapes(tmp_path / "other", **SMALL, seed=4, num_workers=1)
    first = "Annotations/train_000000.xml"
    assert (other.parent / "SHAPES" / first).read_text() != (a / first).read_text()


def test_existing_data_is_kept_and_changed_parameters_regenerate(tmp_path: Path) -> None:
    params = dict(num_train=3, num_val=0, num_test=2, image_size=64, num_workers=1)
    yaml_path = generate_shapes(tmp_path, **params)
    image = tmp_path / "SHAPES" / "JPEGImages" / "train_000000.jpg"
    stamp = image.stat().st_mtime_ns
    assert generate_shapes(tmp_path, **params) == yaml_path
    assert image.stat().st_mtime_ns == stamp  # skipped
    config = load_data_config(yaml_path)
    assert sorted(config.splits) == ["test", "train"]  # no empty val split
    generate_shapes(tmp_path, **{**params, "num_train": 4})
    assert len(build_dataset(load_data_config(yaml_path), "train")) == 4


def test_bad_parameters() -> None:
    with pytest.raises(SSDError):
        generate_shapes("/nonexistent", image_size=16)


def test_render_image_boxes_are_tight_and_objects_sized_as_asked() -> None:
    sides = []
    for i in range(20):
        image, boxes, classes = render_image(np.random.default_rng([9, i]), 128)
        assert image.shape == (3, 128, 128) and image.dtype == np.uint8
        assert 1 <= len(boxes) <= MAX_OBJECTS and len(classes) == len(boxes)
        assert ((classes >= 0) & (classes < len(SHAPES_CLASSES))).all()
        sides += np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).tolist()
    sides = np.array(sides) / 128
    # a box spans at most the shape's diameter (plus a pixel of rounding); rotation and border cuts shrink it
    assert sides.max() <= SIZE_RANGE[1] + 1 / 128 and sides.max() > 0.4
    assert sides.min() < 1.5 * SIZE_RANGE[0]


# area / r^2 for a shape of radius r: exact, or the range its random proportions allow
STAR_SECTOR = 10 * 0.5 * math.sin(math.pi / 5)  # ten triangles (R, inner, 36 degrees)


@pytest.mark.parametrize(
    "name, low, high",
    [
        ("circle", math.pi, math.pi),
        ("square", 1.96, 1.96),  # half side 0.7 r
        ("triangle", 3 * math.sqrt(3) / 4, 3 * math.sqrt(3) / 4),  # equilateral, inscribed
        ("ellipse", math.pi * 0.35, math.pi * 0.6),
        ("star", STAR_SECTOR * 0.38, STAR_SECTOR * 0.5),
        ("cross", 8 * 0.22 - 4 * 0.22**2, 8 * 0.32 - 4 * 0.32**2),
    ],
)
def test_shape_masks_have_the_expected_area(name: str, low: float, high: float) -> None:
    r = 40.0
    mask, x0, y0 = shape_mask(name, 2 * r, 100.3, 50.7, np.random.default_rng(0))
    assert low * 0.97 <= mask.sum() / (r * r) <= high * 1.03
    ys, xs = np.nonzero(mask)
    centre = torch.tensor([xs.mean() + x0 + 0.5, ys.mean() + y0 + 0.5])
    torch.testing.assert_close(centre, torch.tensor([100.3, 50.7], dtype=centre.dtype), atol=0.5, rtol=0)


def test_variants_draw_smaller_or_wider_objects(tmp_path):
    import numpy as np

    from ssd.data.shapes import render_image

    rng = np.random.default_rng
    small = np.concatenate([render_image(rng([1, i]), 128, (0.05, 0.1))[1] for i in range(20)])
    wide = np.concatenate([render_image(rng([2, i]), 128, (0.1, 0.25), stretch=3)[1] for i in range(20)])
    side = np.sqrt((small[:, 2] - small[:, 0]) * (small[:, 3] - small[:, 1]))
    assert len(small) > 20 and side.max() <= 0.1 * 128 * 1.5  # a rotated shape's box is up to ~1.4 its diameter
    aspect = (wide[:, 2] - wide[:, 0]) / (wide[:, 3] - wide[:, 1])
    assert np.median(aspect) > 2.0
    with pytest.raises(SSDError, match="stretch >= 1"):
        generate_shapes(tmp_path, num_train=1, stretch=0)
