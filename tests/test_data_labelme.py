"""LabelMe: rectangles in either corner order, image paths as LabelMe stores them (Windows ones too), and every
other shape or file problem named with the file and shape index."""

from __future__ import annotations

import json

import pytest

from data_helpers import TINY_CLASSES, TINY_IMAGES, labelme_dict, write_labelme
from ssd.data import LabelMeDataset, build_dataset, load_data_config
from ssd.errors import DataError


def test_corners_in_any_order_and_windows_image_paths(tmp_path):
    write_labelme(tmp_path)
    path = tmp_path / "train" / "img_a.json"
    data = json.loads(path.read_text())
    data["shapes"][0]["points"] = data["shapes"][0]["points"][::-1]  # drawn from the bottom-right corner
    data["imagePath"] = "..\\train\\img_a.jpg"  # as LabelMe on Windows writes it
    path.write_text(json.dumps(data))
    dataset = build_dataset(load_data_config(tmp_path / "data.yaml"), "train")
    assert len(dataset) == 3 and dataset.paths[0] == str(tmp_path / "train" / ".." / "train" / "img_a.jpg")
    assert dataset.targets(0)["boxes"].tolist() == [[0.0, 0.0, 64.0, 48.0], [10.0, 5.0, 30.0, 25.0]]


def test_polygons_unknown_labels_and_missing_images_leave_their_image_out_named(tmp_path):
    write_labelme(tmp_path)
    folder = tmp_path / "train"
    a = labelme_dict(TINY_IMAGES[0], "img_a.jpg")
    a["shapes"].append({"label": "cat", "points": [[1, 1], [5, 1], [5, 5]], "shape_type": "polygon"})
    (folder / "img_a.json").write_text(json.dumps(a))
    b = labelme_dict(TINY_IMAGES[1], "img_b.jpg")
    b["shapes"][0]["label"] = "unicorn"
    (folder / "img_b.json").write_text(json.dumps(b))
    (folder / "img_c.json").write_text(json.dumps(labelme_dict(TINY_IMAGES[2], "gone.jpg")))
    (folder / "img_d.json").write_text('{"shapes": [\n  {"label": "cat",,}\n]}')
    dataset = LabelMeDataset([folder], TINY_CLASSES)
    assert len(dataset) == 0
    messages = [str(p) for p in dataset.problems]
    assert messages[0] == (f"{folder / 'img_a.json'}: shape 2 (polygon 'cat'): only rectangles are boxes: the image "
                           "is left out, so that this object is not learned as background")  # fmt: skip
    assert messages[1].startswith(f"{folder / 'img_b.json'}: shape 0 (rectangle 'unicorn'): unknown class 'unicorn'")
    assert messages[2] == f"{folder / 'img_c.json'}: imagePath: the image 'gone.jpg' is not found beside it"
    assert messages[3].startswith(f"{folder / 'img_d.json'}: line 2: malformed JSON")


def test_a_folder_without_labelme_files_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no LabelMe .json files in this folder"):
        LabelMeDataset([tmp_path / "empty"], TINY_CLASSES)
    with pytest.raises(DataError, match="LabelMe folder not found"):
        LabelMeDataset([tmp_path / "nowhere"], TINY_CLASSES)


def test_four_corner_rectangles_are_boxes_and_a_label_must_be_a_name(tmp_path):
    write_labelme(tmp_path)
    path = tmp_path / "train" / "img_a.json"
    data = json.loads(path.read_text())
    data["shapes"][1]["points"] = [[10, 5], [30, 5], [30, 25], [10, 25]]  # as X-AnyLabeling writes it
    path.write_text(json.dumps(data))
    dataset = LabelMeDataset([tmp_path / "train"], TINY_CLASSES)
    assert dataset.targets(0)["boxes"].tolist()[1] == [10.0, 5.0, 30.0, 25.0]
    data["shapes"][1]["label"] = None
    path.write_text(json.dumps(data))
    dataset = LabelMeDataset([tmp_path / "train"], TINY_CLASSES)
    assert "the label must be a class name, got None" in str(dataset.problems[0]) and len(dataset) == 2
