"""Pascal VOC reader and writer: coordinate convention, difficult objects, combined splits and bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from data_helpers import TINY_CLASSES, TINY_IMAGES, TinyImage, write_jpeg_file, write_labelimg, write_voc
from ssd.data import VOC_CLASSES, VOCDataset, build_dataset, load_data_config, write_voc_annotation
from ssd.data.voc import parse_voc_xml
from ssd.errors import DataError

LABELS = {name: i + 1 for i, name in enumerate(TINY_CLASSES)}


def test_devkit_coordinates_are_one_based_inclusive(tmp_path: Path) -> None:
    xml = tmp_path / "a.xml"
    xml.write_text(
        "<annotation><size><width>50</width><height>40</height></size>"
        "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>50</xmax><ymax>40</ymax></bndbox></object>"
        "<object><name>cat</name><difficult>1</difficult>"
        "<bndbox><xmin>11</xmin><ymin>21</ymin><xmax>11</xmax><ymax>30.5</ymax></bndbox></object></annotation>"
    )
    ann, problems = parse_voc_xml(xml, tmp_path / "a.jpg", "a", LABELS)
    assert problems == [] and ann is not None
    # the whole image (pixels 1..50 in the devkit) is [0, 0, W, H]; a one-pixel-wide box has width 1
    np.testing.assert_array_equal(ann.boxes_xyxy, [[0, 0, 50, 40], [10, 20, 11, 30.5]])
    assert ann.labels.tolist() == [2, 1] and ann.difficult.tolist() == [False, True]
    assert (ann.height, ann.width) == (40, 50)


def test_write_then_read_gives_identical_numbers(tmp_path: Path) -> None:
    boxes = np.array([[0, 0, 64, 48], [10.25, 3.5, 30.125, 47.0], [0.1, 0.2, 0.30000001192092896, 0.4]], np.float32)
    write_voc_annotation(tmp_path / "x.xml", "x.jpg", 48, 64, boxes, ["cat", "bird", "dog"], [False, True, False])
    text = (tmp_path / "x.xml").read_text()
    assert "<xmin>1</xmin>" in text and "<xmax>64</xmax>" in text  # integers written as the devkit does
    ann, problems = parse_voc_xml(tmp_path / "x.xml", tmp_path / "x.jpg", "x", LABELS)
    assert problems == []
    np.testing.assert_array_equal(ann.boxes_xyxy, boxes)  # bit for bit
    assert ann.labels.tolist() == [1, 3, 2] and ann.difficult.tolist() == [False, True, False]


def test_missing_size_is_read_from_the_image_header(tmp_path: Path) -> None:
    write_jpeg_file(tmp_path / "a.jpg", 30, 20)
    xml = tmp_path / "a.xml"
    xml.write_text(
        "<annotation><object><name>cat</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object></annotation>"
    )
    ann, problems = parse_voc_xml(xml, tmp_path / "a.jpg", "a", LABELS)
    assert problems == [] and (ann.height, ann.width) == (30, 20)


def test_combined_splits_and_default_class_names(tmp_path: Path) -> None:
    write_voc(tmp_path, TINY_IMAGES[:2], year="VOC2007", split="trainval")
    extra = [TinyImage("2012_x", 0, 20, 20, [(1, 1, 19, 19)], [3])]
    write_voc(tmp_path, extra, year="VOC2012", split="trainval")
    dataset = VOCDataset(tmp_path, ["VOC2007/trainval", "VOC2012/trainval"], TINY_CLASSES)
    assert dataset.image_ids == ["img_a", "img_b", "2012_x"]
    assert dataset.targets(2)["labels"].tolist() == [3]
    # a split given without folder is looked up in the root itself
    assert VOCDataset(tmp_path / "VOC2012", "trainval", TINY_CLASSES).image_ids == ["2012_x"]
    # without names, the 20 VOC classes: "cat" is label 8 there
    default = VOCDataset(tmp_path, "VOC2012/trainval", keep_difficult=False)
    assert default.class_names[1:] == list(VOC_CLASSES) and len(default.class_names) == 21
    assert default.targets(0)["labels"].tolist() == [VOC_CLASSES.index("bird") + 1]


def test_keep_difficult(tmp_path: Path) -> None:
    config = load_data_config(write_voc(tmp_path))
    assert build_dataset(config, "train").targets(1)["difficult"].tolist() == [False, True, False]
    kept = build_dataset(config, "train", keep_difficult=False)[1]
    assert kept.labels.tolist() == [3, 2] and not kept.difficult.any()
    torch.testing.assert_close(kept.boxes, torch.tensor([[5.0, 10, 20, 50], [1, 1, 9, 5]]))


# ---------------------------------------------------------------------------------------------- bad input

BOX = "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>10</ymax></bndbox>"


def broken_xml(tmp_path: Path, case: str) -> Path:
    """Make ``img_a``'s annotation (or image) wrong in one way; return the file the error must name."""
    folder = tmp_path / "VOC2007"
    xml = folder / "Annotations" / "img_a.xml"
    size = "<size><width>64</width><height>48</height></size>"
    if case == "image missing":
        (folder / "JPEGImages" / "img_a.jpg").unlink()
        return folder / "JPEGImages" / "img_a.jpg"
    if case == "xml missing":
        xml.unlink()
        return xml
    body = {
        "malformed": f"<annotation>{size}<object><name>cat</name>\n{BOX}\n</annotation>",
        "unknown class": f"<annotation>{size}<object><name>cat</name>{BOX}</object><object><name>dgo</name>{BOX}"
        "</object></annotation>",
        "x2 <= x1": f"<annotation>{size}<object><name>cat</name><bndbox><xmin>20</xmin><ymin>1</ymin><xmax>10</xmax>"
        "<ymax>10</ymax></bndbox></object></annotation>",
        "outside": f"<annotation>{size}<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>70</xmax>"
        "<ymax>10</ymax></bndbox></object></annotation>",
        "not a number": f"<annotation>{size}<object><name>cat</name><bndbox><xmin>one</xmin><ymin>1</ymin><xmax>10"
        "</xmax><ymax>10</ymax></bndbox></object></annotation>",
        "no bndbox": f"<annotation>{size}<object><name>cat</name></object></annotation>",
    }[case]
    xml.write_text(body)
    return xml


@pytest.mark.parametrize(
    "case, where, message",
    [
        ("image missing", "", "image file not found"),
        ("xml missing", "", "annotation file not found"),
        ("malformed", "line 3", "malformed XML: mismatched tag"),
        ("unknown class", "object 2 (dgo)", "unknown class 'dgo'"),
        ("x2 <= x1", "object 1", "has x2 <= x1"),
        ("outside", "object 1", "lies outside the 64x48 image"),
        ("not a number", "object 1 (cat)", "<bndbox/xmin> is not a number: 'one'"),
        ("no bndbox", "object 1 (cat)", "missing <bndbox/xmin>"),
    ],
)
def test_bad_annotations_are_left_out_or_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str, where: str, message: str
) -> None:
    config = load_data_config(write_voc(tmp_path))
    path = broken_xml(tmp_path, case)
    with caplog.at_level(logging.WARNING, logger="ssd.data.dataset"):
        dataset = build_dataset(config, "train")
    assert dataset.image_ids == ["img_b", "img_c"]  # img_a left out, the others kept
    assert len(dataset.problems) == 1
    problem = dataset.problems[0]
    assert (problem.path, problem.where) == (str(path), where) and message in problem.message
    assert str(path) in caplog.text and message in caplog.text
    with pytest.raises(DataError, match=message) as info:
        build_dataset(config, "train", skip_bad=False)
    assert info.value.path == str(path) and where in str(info.value)


def test_rounding_outside_the_image_is_clipped(tmp_path: Path) -> None:
    config = load_data_config(write_voc(tmp_path))
    (tmp_path / "VOC2007" / "Annotations" / "img_a.xml").write_text(
        "<annotation><size><width>64</width><height>48</height></size><object><name>cat</name>"
        "<bndbox><xmin>0</xmin><ymin>1</ymin><xmax>65</xmax><ymax>48.5</ymax></bndbox></object></annotation>"
    )
    dataset = build_dataset(config, "train", skip_bad=False)
    assert dataset.targets(0)["boxes"].tolist() == [[0, 0, 64, 48]]


@pytest.mark.parametrize("content, message", [(None, "split file not found"), ("\n  \n", "split file is empty")])
def test_missing_or_empty_split_file(tmp_path: Path, content: str | None, message: str) -> None:
    config = load_data_config(write_voc(tmp_path))
    split_file = tmp_path / "VOC2007" / "ImageSets" / "Main" / "train.txt"
    if content is None:
        split_file.unlink()
    else:
        split_file.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        build_dataset(config, "train")  # no images at all: an error even when skipping bad samples
    assert info.value.path == str(split_file)


def test_corrupt_image_is_skipped_at_load_time(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = load_data_config(write_voc(tmp_path))
    image = tmp_path / "VOC2007" / "JPEGImages" / "img_b.jpg"
    image.write_bytes(image.read_bytes()[:100])  # truncated
    dataset = build_dataset(config, "train")
    with caplog.at_level(logging.WARNING, logger="ssd.data"):
        assert [dataset[i] is None for i in range(3)] == [False, True, False]
    assert dataset.unreadable.indices() == [1]
    assert len(caplog.records) == 1 and str(image) in caplog.records[0].getMessage()
    with pytest.raises(DataError, match="truncated") as info:
        build_dataset(config, "train", skip_bad=False)[1]
    assert info.value.path == str(image)


def _rotate_stored_image(path: Path) -> None:
    """Rewrite ``path`` as a phone would store the upright photo: transposed pixels plus EXIF orientation 6."""
    import PIL.Image

    with PIL.Image.open(path) as upright:
        stored = upright.transpose(PIL.Image.Transpose.ROTATE_90)  # counter-clockwise; orientation 6 undoes it
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(path, exif=exif.tobytes(), quality=95)


def test_exif_rotated_photos_are_read_upright_with_their_boxes(tmp_path: Path) -> None:
    data = load_data_config(write_voc(tmp_path))  # annotations drawn on the upright images, as viewers show them
    photo = tmp_path / "VOC2007" / "JPEGImages" / "img_b.jpg"  # 40 wide, 60 tall upright
    _rotate_stored_image(photo)
    dataset = build_dataset(data, "train")
    index = dataset.paths.index(str(photo))
    sample = dataset.load_sample(index)
    assert sample.image.shape == (3, 60, 40)  # upright, as the annotation says
    assert sample.boxes.tolist()[0] == [5.0, 10.0, 20.0, 50.0]


def test_a_size_swapped_by_exif_orientation_is_named(tmp_path: Path) -> None:
    data = load_data_config(write_voc(tmp_path))
    photo = tmp_path / "VOC2007" / "JPEGImages" / "img_b.jpg"  # 40 wide, 60 tall upright
    # the labelling tool wrote the stored (unrotated) size, 60 wide and 40 tall
    write_voc_annotation(
        tmp_path / "VOC2007" / "Annotations" / "img_b.xml", "img_b.jpg", 40, 60, [(1, 1, 9, 5)], ["cat"]
    )
    _rotate_stored_image(photo)
    dataset = build_dataset(data, "train")
    with pytest.raises(DataError, match=r"40x60 pixels as shown but .* says 60x40: .* EXIF orientation"):
        dataset.load_sample(dataset.paths.index(str(photo)))


def test_a_labelimg_folder_finds_images_beside_or_in_a_sibling_folder_and_names_what_is_missing(tmp_path):
    config = load_data_config(write_labelimg(tmp_path / "beside"))
    assert config.format == "voc" and len(build_dataset(config, "train")) == 3
    sibling = write_labelimg(tmp_path / "sibling", sibling=True)
    dataset = build_dataset(load_data_config(sibling), "train")
    assert dataset.paths[0] == str(tmp_path / "sibling" / "train" / "images" / "img_a.jpg")

    (tmp_path / "sibling" / "train" / "images" / "img_b.jpg").unlink()
    dataset = build_dataset(load_data_config(sibling), "train")
    xml = tmp_path / "sibling" / "train" / "annotations" / "img_b.xml"
    assert len(dataset) == 2 and [str(p) for p in dataset.problems] == [
        f"{xml}: <filename>: the image 'img_b.jpg' is neither beside this XML nor in a sibling images/ or "
        "JPEGImages/ folder"
    ]


def test_a_labelimg_filename_with_a_windows_path_or_a_wrong_suffix_still_finds_its_image(tmp_path):
    write_labelimg(tmp_path)
    for name, stored in (("img_a", "C:\\Users\\me\\labels\\img_a.jpg"), ("img_b", "img_b.png")):
        xml = tmp_path / "train" / f"{name}.xml"
        xml.write_text(xml.read_text().replace(f"<filename>{name}.jpg</filename>", f"<filename>{stored}</filename>"))
    dataset = build_dataset(load_data_config(tmp_path / "data.yaml"), "train")
    assert len(dataset) == 3 and not dataset.problems
    assert dataset.targets(0)["boxes"].tolist()[0] == [0.0, 0.0, 64.0, 48.0]  # continuous: read as written
