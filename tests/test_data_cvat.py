"""CVAT for images 1.1: boxes read in CVAT's own coordinates, and every other shape, label or file problem named
with the image and shape it is in."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_helpers import TINY_CLASSES, write_cvat
from ssd.data import CvatDataset, build_dataset, load_data_config
from ssd.data.cvat import cvat_label_names
from ssd.errors import DataError


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_boxes_are_read_as_cvat_writes_them_and_ids_are_cvats(tmp_path):
    dataset = build_dataset(load_data_config(write_cvat(tmp_path)), "train")
    assert [dataset.image_ids[i] for i in range(3)] == [7, 3, 12]
    assert dataset.targets(1)["boxes"].tolist() == [[5.0, 10.0, 20.0, 50.0], [20.0, 30.0, 40.0, 60.0], [1, 1, 9, 5]]
    assert cvat_label_names([tmp_path / "annotations.xml"]) == sorted(TINY_CLASSES)


def test_other_shapes_unknown_labels_and_bad_boxes_leave_their_image_out_named(tmp_path):
    write_cvat(tmp_path)
    xml = tmp_path / "annotations.xml"
    edit(xml, "</image>", '<polygon label="cat" points="1,1;5,1;5,5" z_order="0"></polygon></image>')
    edit(xml, 'box label="bird"', 'box label="unicorn"')
    edit(xml, 'xtl="1.00" ytl="1.00"', 'xtl="oops" ytl="1.00"')
    dataset = CvatDataset(xml, tmp_path / "images", TINY_CLASSES)
    assert len(dataset) == 1  # only img_c, which has no objects, is left
    messages = [str(p) for p in dataset.problems]
    assert f"{xml}: image 7 (img_a.jpg), shape 2 (polygon 'cat'): only boxes are read" in messages[0]
    assert any("image 3 (img_b.jpg), shape 0 (box 'unicorn'): unknown class 'unicorn'" in m for m in messages)
    assert any("shape 2 (box 'dog'): needs numbers xtl, ytl, xbr and ybr" in m for m in messages)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('<?xml version="1.0"?><annotations><version>1.1</version></annotations>', "no <image> element: empty"),
        ("<annotations><track id='0' label='cat'></track></annotations>", "annotates a video"),
        ("<annotation><filename>a.jpg</filename></annotation>", "root element is <annotation>, not CVAT's"),
        ("<annotations><image id='0'", "line 1: malformed XML"),
    ],
)
def test_broken_files_are_errors_naming_the_file(tmp_path, text, message):
    (tmp_path / "a.xml").write_text(text)
    with pytest.raises(DataError, match=message) as info:
        CvatDataset(tmp_path / "a.xml", tmp_path, TINY_CLASSES)
    assert info.value.path == str(tmp_path / "a.xml")


def test_a_missing_image_is_a_problem_naming_the_file(tmp_path):
    write_cvat(tmp_path)
    (tmp_path / "images" / "img_b.jpg").unlink()
    dataset = build_dataset(load_data_config(tmp_path / "data.yaml"), "train")
    assert len(dataset) == 2
    assert str(dataset.problems[0]) == f"{tmp_path / 'images' / 'img_b.jpg'}: image file not found (listed in " \
        f"{tmp_path / 'annotations.xml'})"  # fmt: skip


def test_rotated_boxes_and_labels_of_other_shapes(tmp_path):
    write_cvat(tmp_path)
    xml = tmp_path / "annotations.xml"
    edit(xml, 'box label="cat" source="manual" occluded="0" xtl="0.00"', 'box label="cat" rotation="30.0" xtl="0.00"')
    edit(xml, "</labels>", "<label><name>road</name><type>polygon</type></label><label><name>kp</name>"
         "<type>points</type><parent>body</parent></label></labels>")  # fmt: skip
    assert cvat_label_names([xml]) == sorted(TINY_CLASSES)  # only labels that can be boxes
    dataset = CvatDataset(xml, tmp_path / "images", TINY_CLASSES)
    assert any("rotated by 30 degrees is not an axis-aligned box" in str(p) for p in dataset.problems)
    assert len(dataset) == 2
