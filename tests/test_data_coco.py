"""COCO reader: category id mapping, xywh boxes, crowd regions, images without objects and bad input."""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path

import pytest
import torch

from data_helpers import TINY_CLASSES, TINY_IMAGES, coco_dict, write_coco, write_roboflow_coco
from ssd.data import CocoDataset, build_dataset, load_data_config
from ssd.errors import DataError


def test_category_ids_map_to_contiguous_labels_and_back(tmp_path: Path) -> None:
    write_coco(tmp_path)
    dataset = CocoDataset(tmp_path / "train", tmp_path / "annotations" / "train.json")
    assert dataset.category_id_to_label == {1: 1, 5: 2, 90: 3}
    assert dataset.label_to_category_id == {1: 1, 2: 5, 3: 90}
    assert dataset.class_names == ["__background__", *TINY_CLASSES]  # sorted by id, whatever the file's order
    assert dataset.annotation_file == str(tmp_path / "annotations" / "train.json")


def test_bbox_xywh_crowd_and_images_without_annotations(tmp_path: Path) -> None:
    data = coco_dict()
    data["annotations"].append(
        {"id": 99, "image_id": 7, "category_id": 90, "bbox": [2.5, 4, 10, 20.5], "iscrowd": 1, "area": 205}
    )
    write_coco(tmp_path, data=data)
    dataset = build_dataset(load_data_config(tmp_path / "data.yaml"), "train")
    assert dataset.image_ids == [7, 3, 12]  # the JSON's ids, in the JSON's order
    sample = dataset[0]
    torch.testing.assert_close(sample.boxes, torch.tensor([[0.0, 0, 64, 48], [10, 5, 30, 25], [2.5, 4, 12.5, 24.5]]))
    assert sample.labels.tolist() == [1, 2, 3]
    assert sample.iscrowd.tolist() == [False, False, True]
    assert sample.difficult.tolist() == [False, False, False]
    empty = dataset.targets(2)  # img_c has no annotation
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert dataset[2].image.shape == (3, 32, 32)


def test_names_in_the_data_config_must_match_the_file(tmp_path: Path) -> None:
    write_coco(tmp_path)
    with pytest.raises(DataError, match="differ from the data config's names"):
        CocoDataset(tmp_path / "train", tmp_path / "annotations" / "train.json", ["dog", "cat", "bird"])
    assert len(CocoDataset(tmp_path / "train", tmp_path / "annotations" / "train.json", TINY_CLASSES)) == 3


def annotation_of(data: dict, image_id: int) -> dict:
    return next(a for a in data["annotations"] if a["image_id"] == image_id)


@pytest.mark.parametrize(
    "case, where, message",
    [
        ("unknown category", "annotation id 1", "unknown category_id 2"),
        ("zero width", "annotation id 1", "has x2 <= x1 (image img_a.jpg)"),
        ("outside", "annotation id 1", "lies outside the 64x48 image (image img_a.jpg)"),
        ("bad bbox", "annotation id 1", "needs a 'category_id' and a 'bbox' [x, y, w, h]"),
    ],
)
def test_bad_annotations_leave_their_image_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str, where: str, message: str
) -> None:
    data = coco_dict()
    ann = annotation_of(data, 7)  # img_a, annotation id 1
    if case == "unknown category":
        ann["category_id"] = 2
    elif case == "zero width":
        ann["bbox"] = [10, 5, 0, 20]
    elif case == "outside":
        ann["bbox"] = [10, 5, 60, 20]
    else:
        ann["bbox"] = [10, 5, 20]
    write_coco(tmp_path, data=data)
    json_path = str(tmp_path / "annotations" / "train.json")
    with caplog.at_level(logging.WARNING, logger="ssd.data.dataset"):
        dataset = build_dataset(load_data_config(tmp_path / "data.yaml"), "train")
    [problem] = dataset.problems
    assert (problem.path, problem.where) == (json_path, where) and message in problem.message
    assert message in caplog.text
    assert dataset.image_ids == [3, 12]  # img_a left out: its objects are not all known
    with pytest.raises(DataError, match=re.escape(message)) as info:
        build_dataset(load_data_config(tmp_path / "data.yaml"), "train", skip_bad=False)
    assert info.value.path == json_path


def test_annotation_of_an_unlisted_image_and_a_missing_image_file(tmp_path: Path) -> None:
    data = coco_dict()
    data["annotations"].append({"id": 50, "image_id": 1234, "category_id": 1, "bbox": [0, 0, 1, 1]})
    write_coco(tmp_path, data=data)
    (tmp_path / "train" / "img_b.jpg").unlink()
    dataset = build_dataset(load_data_config(tmp_path / "data.yaml"), "train")
    assert dataset.image_ids == [7, 12]
    texts = sorted(str(p) for p in dataset.problems)
    assert texts == sorted([
        f"{tmp_path / 'annotations' / 'train.json'}: annotation id 50: refers to image id 1234, which 'images' "
        "does not list",
        f"{tmp_path / 'train' / 'img_b.jpg'}: image file not found (listed in {tmp_path / 'annotations/train.json'})",
    ])  # fmt: skip


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"images": [],\n "annotations": [}', "line 2: malformed JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"images": [], "annotations": []}', "missing the list 'categories'"),
        (
            '{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}',
            "listed twice",
        ),
    ],
)
def test_malformed_files_are_errors_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    write_coco(tmp_path)
    json_path = tmp_path / "annotations" / "train.json"
    json_path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        build_dataset(load_data_config(tmp_path / "data.yaml"), "train")
    assert info.value.path == str(json_path)


def test_missing_annotation_file(tmp_path: Path) -> None:
    write_coco(tmp_path)
    (tmp_path / "annotations" / "train.json").unlink()
    with pytest.raises(DataError, match="annotation file not found"):
        build_dataset(load_data_config(tmp_path / "data.yaml"), "train")


def test_duplicate_image_id_is_a_problem(tmp_path: Path) -> None:
    data = coco_dict()
    data["images"].append(copy.deepcopy(data["images"][0]))
    write_coco(tmp_path, TINY_IMAGES, data=data)
    dataset = CocoDataset(tmp_path / "train", tmp_path / "annotations" / "train.json")
    assert [p.where for p in dataset.problems] == ["image 3"] and "listed twice" in dataset.problems[0].message
    assert dataset.image_ids == [7, 3, 12]


def test_a_roboflow_folder_drops_the_unused_supercategory_and_maps_labels_back(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ssd.data"):
        dataset = build_dataset(load_data_config(write_roboflow_coco(tmp_path)), "train")
    assert dataset.class_names[1:] == TINY_CLASSES
    assert dataset.label_to_category_id == {1: 1, 2: 5, 3: 90}  # results files keep the dataset's own ids
    assert dataset.annotation_file == str(tmp_path / "train" / "_annotations.coco.json")
    assert any("category 0 ('tiny-animals') left out" in r.getMessage() for r in caplog.records)
    assert "the categories of" in dataset.names_source


def test_a_category_that_is_its_own_supercategory_stays_in_every_split(tmp_path):
    data = coco_dict()
    data["categories"] = [{**c, "supercategory": c["name"]} for c in data["categories"]]  # COCO's "person"
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 90]  # no bird in this split
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    (tmp_path / "images").mkdir()
    assert CocoDataset(tmp_path / "images", path).class_names[1:] == TINY_CLASSES
