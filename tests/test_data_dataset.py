"""The Sample, the data YAML, the shared box checks, lazy loading with skip_bad, and the three readers agreeing."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from data_helpers import (
    TINY_CLASSES,
    TINY_IMAGES,
    write_coco,
    write_cvat,
    write_jpeg_file,
    write_labelimg,
    write_labelme,
    write_roboflow_coco,
    write_roboflow_yolo,
    write_voc,
    write_yaml,
    write_yolo,
)
from ssd.data import DataConfig, DetectionDataset, ImageAnnotation, Sample, build_dataset, load_data_config
from ssd.data.dataset import check_boxes
from ssd.errors import DataError


def annotation(path: Path, height: int, width: int, boxes: list, labels: list, difficult: list | None = None):
    n = len(labels)
    return ImageAnnotation(
        str(path),
        path.stem,
        height,
        width,
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(labels, np.int64),
        np.array(difficult or [False] * n),
        np.zeros(n, bool),
        "ann.xml",
    )


# ---------------------------------------------------------------------------------------------- the three readers


def write_labelimg_sibling(root: Path) -> Path:
    return write_labelimg(root, sibling=True)


WRITERS = [write_voc, write_coco, write_yolo, write_labelimg, write_labelimg_sibling, write_roboflow_coco,
           write_roboflow_yolo, write_cvat, write_labelme]  # fmt: skip
VOC_WRITERS = (write_voc, write_labelimg, write_labelimg_sibling)  # the layouts with VOC's difficult flag
COCO_ID_WRITERS = (write_coco, write_roboflow_coco, write_cvat)  # image ids from the file, not the file name


@pytest.mark.parametrize("writer", WRITERS)
def test_readers_agree_on_the_same_dataset(tmp_path: Path, writer) -> None:
    dataset = build_dataset(load_data_config(writer(tmp_path)), "train")
    assert dataset.class_names == ["__background__", *TINY_CLASSES]
    assert dataset.num_classes == 4
    assert len(dataset) == len(TINY_IMAGES)
    # image ids: the file stem (VOC, YOLO) or the JSON's id (COCO)
    by_name = {Path(dataset.paths[i]).stem: i for i in range(len(dataset))}
    for img in TINY_IMAGES:
        i = by_name[img.name]
        expected_id = img.coco_id if writer in COCO_ID_WRITERS else img.name
        sample = dataset[i]
        assert isinstance(sample, Sample)
        assert sample.image_id == expected_id
        assert sample.image.dtype == torch.uint8 and sample.image.shape == (3, img.height, img.width)
        assert sample.boxes.dtype == torch.float32 and sample.labels.dtype == torch.int64
        expected = torch.tensor(img.boxes, dtype=torch.float32).reshape(-1, 4)
        torch.testing.assert_close(sample.boxes, expected, atol=1e-3, rtol=0)  # YOLO's normalised text rounds
        assert sample.labels.tolist() == img.labels
        assert sample.iscrowd.tolist() == [False] * len(img.labels)
        # difficult exists only in VOC
        assert sample.difficult.tolist() == (img.difficult if writer in VOC_WRITERS else [False] * len(img.labels))
        assert dataset.image_size(i) == (img.height, img.width)
        targets = dataset.targets(i)
        torch.testing.assert_close(targets["boxes"], sample.boxes)
        assert targets["labels"].tolist() == img.labels


def test_box_table_lists_every_box_with_its_image(tmp_path: Path) -> None:
    dataset = build_dataset(load_data_config(write_voc(tmp_path)), "train")
    table = dataset.box_table()
    assert table["image_index"].tolist() == [0, 0, 1, 1, 1]
    assert table["image_size"].tolist() == [[48, 64]] * 2 + [[60, 40]] * 3
    assert table["labels"].tolist() == [1, 2, 3, 1, 2]
    assert table["difficult"].tolist() == [False, False, False, True, False]


def test_transform_is_applied_and_keep_difficult_drops_difficult_objects(tmp_path: Path) -> None:
    config = load_data_config(write_voc(tmp_path))
    dataset = build_dataset(config, "train", transform=lambda s: len(s.labels), keep_difficult=False)
    assert [dataset[i] for i in range(3)] == [2, 2, 0]  # img_b loses its difficult box
    assert dataset.targets(1)["labels"].tolist() == [3, 2]


# ---------------------------------------------------------------------------------------------- the data YAML


def test_load_data_config_resolves_paths_against_the_yaml_folder(tmp_path: Path) -> None:
    (tmp_path / "data" / "root").mkdir(parents=True)
    (tmp_path / "configs").mkdir()
    path = write_yaml(
        tmp_path / "configs" / "d.yaml",
        {"format": "yolo", "path": "../data/root", "nc": 2, "names": {0: "a", 1: "b"}, "train": "images/train"},
    )
    config = load_data_config(path)
    assert config.path == (tmp_path / "data" / "root").resolve()
    assert config.names == ["a", "b"]
    assert config.splits == {"train": "images/train"}
    assert config.source == str(path)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"format": "voc", "train": "x/y", "trian": "x/z"}, r"unknown key\(s\) trian"),
        ({"format": "pascal", "train": "x/y"}, "'format' must be one of"),
        ({"format": "voc", "path": "nowhere", "train": "x/y"}, "root folder"),
        ({"format": "voc"}, "defines no split"),
        ({"format": "yolo", "train": "images/train"}, "needs 'names'"),
        ({"format": "voc", "names": ["a", "b"], "nc": 3, "train": "x/y"}, "'nc' is 3"),
        ({"format": "voc", "names": {0: "a", 2: "b"}, "train": "x/y"}, "keys 0..1"),
        ({"format": "voc", "names": ["a", "a"], "train": "x/y"}, "twice"),
        ({"format": "voc", "names": ["__background__", "a"], "train": "x/y"}, "background"),
    ],
)
def test_load_data_config_errors_name_the_file(tmp_path: Path, values: dict, message: str) -> None:
    path = write_yaml(tmp_path / "bad.yaml", values)
    with pytest.raises(DataError, match=message) as info:
        load_data_config(path)
    assert info.value.path == str(path)


def test_missing_yaml_and_missing_split_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_data_config(tmp_path / "none.yaml")
    config = load_data_config(write_voc(tmp_path))
    with pytest.raises(DataError, match="defines no 'val' split") as info:
        build_dataset(config, "val")
    assert info.value.path == config.source


def test_malformed_split_specs_are_reported(tmp_path: Path) -> None:
    coco = DataConfig("coco", tmp_path, None, train="train2017", source="d.yaml")
    with pytest.raises(DataError, match="expected one COCO instances .json in this folder, found no"):
        build_dataset(coco, "train")
    coco = DataConfig("coco", tmp_path, None, train={"images": "a"}, source="d.yaml")
    with pytest.raises(DataError, match="a coco split is"):
        build_dataset(coco, "train")
    voc = DataConfig("voc", tmp_path, None, train={"a": 1}, source="d.yaml")
    with pytest.raises(DataError, match="expected a path such as 'VOC2007/trainval'"):
        build_dataset(voc, "train")


# ---------------------------------------------------------------------------------------------- boxes


def test_check_boxes_clips_rounding_and_names_wrong_boxes() -> None:
    boxes = np.array([
        [-1.0, -0.5, 11.0, 20.5],  # sticks out by <= 1 px: clipped
        [-1.5, 0, 5, 5],  # 1.5 px outside: an error
        [5, 5, 5, 8],  # x2 <= x1
        [5, 8, 6, 7],  # y2 <= y1
        [0, 0, np.nan, 3],
        [2, 3, 4, 5],
    ])  # fmt: skip
    clipped, errors = check_boxes(boxes, 10, 20)
    np.testing.assert_array_equal(clipped[0], [0, 0, 10, 20])
    np.testing.assert_array_equal(clipped[5], [2, 3, 4, 5])
    assert sorted(errors) == [1, 2, 3, 4]
    assert "outside the 10x20 image" in errors[1]
    assert "x2 <= x1" in errors[2] and "y2 <= y1" in errors[3] and "not a finite" in errors[4]
    # per-box image sizes
    _, errors = check_boxes(np.array([[0, 0, 30, 10], [0, 0, 30, 10]]), np.array([40, 20]), np.array([10, 10]))
    assert list(errors) == [1]


# ---------------------------------------------------------------------------------------------- bad samples


def test_bad_sample_is_skipped_with_one_warning_or_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_jpeg_file(tmp_path / "good.jpg", 10, 10)
    write_jpeg_file(tmp_path / "wrong_size.jpg", 12, 10)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    annotations = [
        annotation(tmp_path / "good.jpg", 10, 10, [[0, 0, 5, 5]], [1]),
        annotation(tmp_path / "wrong_size.jpg", 10, 10, [[0, 0, 5, 5]], [1]),  # the file is 10x12
        annotation(tmp_path / "corrupt.jpg", 10, 10, [], []),
    ]
    dataset = DetectionDataset(annotations, ["thing"])
    with caplog.at_level(logging.WARNING, logger="ssd.data"):
        assert isinstance(dataset[0], Sample)
        assert dataset[1] is None
        assert dataset[2] is None
        assert dataset[2] is None  # again: not logged again
    assert dataset.unreadable.indices() == [1, 2]
    assert len(caplog.records) == 2
    assert "wrong_size.jpg" in caplog.records[0].getMessage() and "says 10x10" in caplog.records[0].getMessage()
    assert "corrupt.jpg" in caplog.records[1].getMessage()

    strict = DetectionDataset(annotations, ["thing"], skip_bad=False)
    with pytest.raises(DataError, match="image is 10x12 pixels") as info:
        strict[1]
    assert info.value.path == str(tmp_path / "wrong_size.jpg")
    with pytest.raises(DataError, match="cannot decode"):
        strict.load_sample(2)


def test_construction_problems_are_kept_logged_or_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from ssd.data import Problem

    problems = [Problem("a.xml", "object 2", "unknown class 'dgo'")]
    with caplog.at_level(logging.WARNING, logger="ssd.data.dataset"):
        dataset = DetectionDataset([], ["thing"], problems)
    assert dataset.problems == problems and len(dataset) == 0
    assert "a.xml: object 2: unknown class 'dgo'" in caplog.text
    with pytest.raises(DataError, match="object 2: unknown class") as info:
        DetectionDataset([], ["thing"], problems, skip_bad=False)
    assert info.value.path == "a.xml"
