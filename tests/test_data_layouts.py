"""The format told from the files when the data YAML has none, Ultralytics' path rule, other tools' keys, and the
class names taken from the annotations when the YAML gives none."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from data_helpers import (
    TINY_CLASSES,
    TINY_IMAGES,
    labelme_dict,
    write_coco,
    write_cvat,
    write_labelimg,
    write_labelme,
    write_roboflow_coco,
    write_roboflow_yolo,
    write_voc,
    write_yaml,
    write_yolo,
)
from ssd.data import build_dataset, load_data_config
from ssd.data.check import check_dataset, format_report
from ssd.data.layouts import resolve_split_path
from ssd.errors import DataError


def without_format(yaml_path: Path) -> Path:
    """The data YAML with its format: key removed."""
    import yaml

    values = yaml.safe_load(yaml_path.read_text())
    values.pop("format", None)
    return write_yaml(yaml_path, values)


@pytest.mark.parametrize(
    ("writer", "expected"),
    [(write_voc, "voc"), (write_coco, "coco"), (write_yolo, "yolo"), (write_labelimg, "voc"),
     (write_roboflow_coco, "coco"), (write_roboflow_yolo, "yolo"), (write_cvat, "cvat"), (write_labelme, "labelme")],
)  # fmt: skip
def test_the_format_is_told_from_the_files(tmp_path, writer, expected):
    config = load_data_config(without_format(writer(tmp_path)))
    assert config.format == expected and config.format_inferred
    assert len(build_dataset(config, "train")) == len(TINY_IMAGES)


def test_format_wins_when_given_and_what_cannot_be_told_is_named(tmp_path):
    yaml_path = write_labelimg(tmp_path / "labelimg")
    values = {"format": "yolo", "names": TINY_CLASSES, "train": "train"}
    with pytest.raises(DataError, match="'images' component"):  # read as told: the YOLO reader refuses the folder
        build_dataset(load_data_config(write_yaml(yaml_path, values)), "train")

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    with pytest.raises(DataError, match=r"split 'train': cannot tell its format; looked for a VOC .*LabelMe") as info:
        load_data_config(write_yaml(tmp_path / "notes.yaml", {"train": "notes"}))
    assert info.value.path == str(tmp_path / "notes.yaml")

    mixed = tmp_path / "mixed"
    write_labelimg(mixed)
    (mixed / "train" / "img_a.json").write_text(json.dumps(labelme_dict(TINY_IMAGES[0], "img_a.jpg")))
    with pytest.raises(DataError, match="split 'train' looks like labelme and voc: set format:"):
        load_data_config(write_yaml(mixed / "data.yaml", {"train": "train"}))

    write_labelme(tmp_path / "two")
    write_labelimg(tmp_path / "two" / "other")
    with pytest.raises(DataError, match=r"different formats \(train is labelme, val is voc\)"):
        load_data_config(write_yaml(tmp_path / "two" / "data.yaml", {"train": "train", "val": "other/train"}))


def test_roboflow_yaml_loads_unchanged_with_its_keys_noted(tmp_path, caplog):
    yaml_path = write_roboflow_yolo(tmp_path)
    with caplog.at_level(logging.INFO, logger="ssd.data"):
        config = load_data_config(yaml_path)
    assert config.format == "yolo" and config.names == TINY_CLASSES
    assert any("ignoring roboflow (for other tools)" in r.getMessage() for r in caplog.records)
    assert resolve_split_path(config.path, "../train/images") == tmp_path / "train" / "images"
    (tmp_path / "up").mkdir()  # a ../ that exists is taken as written
    assert resolve_split_path(tmp_path / "up", "../train/images") == tmp_path / "up" / ".." / "train" / "images"
    values = {"names": TINY_CLASSES, "train": "../train/images", "nc": 4}
    with pytest.raises(DataError, match="'nc' is 4 but 'names' lists 3 classes"):
        load_data_config(write_yaml(tmp_path / "bad_nc.yaml", values))
    with pytest.raises(DataError, match=r"unknown key\(s\) workspace"):
        load_data_config(write_yaml(tmp_path / "bad.yaml", {**values, "nc": 3, "workspace": "me"}))


@pytest.mark.parametrize("writer", [write_labelimg, write_labelme, write_cvat])
def test_without_names_the_classes_are_those_the_annotations_name(tmp_path, writer):
    yaml_path = writer(tmp_path)
    import yaml

    values = yaml.safe_load(yaml_path.read_text())
    values.pop("names")
    config = load_data_config(write_yaml(yaml_path, values))
    dataset = build_dataset(config, "train")
    assert dataset.class_names[1:] == sorted(TINY_CLASSES) == ["bird", "cat", "dog"]
    assert "the annotations name, sorted" in dataset.names_source
    labels = {name: dataset.class_names.index(name) for name in TINY_CLASSES}
    sample = dataset[0]  # img_a: a cat and a dog
    assert sample.labels.tolist() == [labels["cat"], labels["dog"]]
    report = format_report(check_dataset(config, decode_images=False))
    assert f"data: {yaml_path} ({config.format}, told from the files, 3 classes)" in report
    assert "classes: bird, cat, dog (from the classes the annotations name, sorted" in report
    assert "split train: 3 images (1 without objects), 5 boxes" in report


def test_layouts_real_exports_have(tmp_path):
    """A missing split, a CVAT export folder, a COCO file of any name, a stray JSON beside LabelMe files."""
    write_roboflow_yolo(tmp_path / "rf")
    import yaml

    rf = tmp_path / "rf" / "data.yaml"
    rf.write_text(yaml.safe_dump({**yaml.safe_load(rf.read_text()), "test": "../test/images"}))  # not exported
    assert load_data_config(rf).format == "yolo"

    write_cvat(tmp_path / "cvat")
    config = load_data_config(write_yaml(tmp_path / "cvat" / "folder.yaml", {"names": TINY_CLASSES, "train": "."}))
    assert config.format == "cvat" and len(build_dataset(config, "train")) == 3

    write_coco(tmp_path / "coco")
    (tmp_path / "coco" / "annotations" / "train.json").rename(tmp_path / "coco" / "train" / "instances.json")
    config = load_data_config(write_yaml(tmp_path / "coco" / "data.yaml", {"train": "train"}))
    assert config.format == "coco" and len(build_dataset(config, "train")) == 3

    write_labelme(tmp_path / "lm")
    (tmp_path / "lm" / "train" / "0classes.json").write_text('["cat", "dog", "bird"]')
    assert load_data_config(tmp_path / "lm" / "data.yaml").format == "labelme"


def test_the_same_file_name_in_two_folders_gets_two_image_ids(tmp_path):
    write_labelme(tmp_path / "a")
    write_labelme(tmp_path / "b")
    values = {"names": TINY_CLASSES, "train": ["a/train", "b/train"]}
    dataset = build_dataset(load_data_config(write_yaml(tmp_path / "data.yaml", values)), "train")
    assert len(set(dataset.image_ids)) == len(dataset) == 6 and "a/train/img_a" in dataset.image_ids
