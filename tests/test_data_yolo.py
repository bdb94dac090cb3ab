"""YOLO reader: label paths, normalised coordinates, missing label files and bad label lines."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from data_helpers import TINY_CLASSES, write_jpeg_file, write_yaml, write_yolo
from ssd.data import YoloDataset, build_dataset, load_data_config, yolo
from ssd.data.yolo import LabelFile, annotations_in_bulk, label_path, read_lines
from ssd.errors import DataError


def test_label_path_replaces_the_last_images_component(tmp_path: Path) -> None:
    image = tmp_path / "images" / "set" / "images" / "train" / "a.b.jpg"
    assert label_path(image) == tmp_path / "images" / "set" / "labels" / "train" / "a.b.txt"


def test_normalised_labels_become_pixels_and_missing_label_file_is_empty(tmp_path: Path) -> None:
    write_jpeg_file(tmp_path / "images" / "val" / "sub" / "p.jpg", 40, 80)
    write_jpeg_file(tmp_path / "images" / "val" / "q.png.jpg", 10, 10)  # no label file: no objects
    (tmp_path / "labels" / "val" / "sub").mkdir(parents=True)
    (tmp_path / "labels" / "val" / "sub" / "p.txt").write_text("2 0.5 0.5 1 1\n\n0 0.25 0.75 0.5 0.25\n")
    dataset = YoloDataset(tmp_path / "images" / "val", TINY_CLASSES)
    assert dataset.image_ids == ["q.png", "p"]  # sorted paths: q.png.jpg before sub/p.jpg
    assert dataset.targets(0)["boxes"].shape == (0, 4)
    torch.testing.assert_close(dataset.targets(1)["boxes"], torch.tensor([[0.0, 0, 80, 40], [0, 25, 40, 35]]))
    assert dataset.targets(1)["labels"].tolist() == [3, 1]  # class id + 1
    assert dataset.image_size(1) == (40, 80)


def test_several_image_folders_are_combined(tmp_path: Path) -> None:
    write_jpeg_file(tmp_path / "images" / "a" / "1.jpg", 8, 8)
    write_jpeg_file(tmp_path / "images" / "b" / "2.jpg", 8, 8)
    yaml_path = write_yaml(tmp_path / "d.yaml", {"format": "yolo", "names": ["x"], "train": ["images/a", "images/b"]})
    assert build_dataset(load_data_config(yaml_path), "train").image_ids == ["1", "2"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("0 0.5 0.5 0.2", "expected 5 fields 'class cx cy w h', got 4"),
        ("0 0.5 0.5 0.2 0.2 0.1", "expected 5 fields 'class cx cy w h', got 6"),
        ("0 0.5 half 0.2 0.2", "not a number in '0 0.5 half 0.2 0.2'"),
        ("3 0.5 0.5 0.2 0.2", "class id 3 is not one of 0..2"),
        ("-1 0.5 0.5 0.2 0.2", "class id -1 is not one of 0..2"),
        ("1.5 0.5 0.5 0.2 0.2", "class id 1.5 is not one of 0..2"),
        ("1 0.5 0.5 0 0.2", "has x2 <= x1"),
        ("1 0.9 0.5 0.5 0.2", "lies outside the 64x48 image"),
    ],
)
def test_bad_label_lines_name_the_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, line: str, message: str
) -> None:
    config = load_data_config(write_yolo(tmp_path))
    labels = tmp_path / "labels" / "train" / "img_a.txt"
    labels.write_text("0 0.5 0.5 0.5 0.5\n" + line + "\n")
    with caplog.at_level(logging.WARNING, logger="ssd.data.dataset"):
        dataset = build_dataset(config, "train")
    assert dataset.image_ids == ["img_b", "img_c"]
    [problem] = dataset.problems
    assert (problem.path, problem.where) == (str(labels), "line 2")
    assert message in problem.message and message in caplog.text
    with pytest.raises(DataError) as info:
        build_dataset(config, "train", skip_bad=False)
    assert info.value.path == str(labels) and "line 2: " in str(info.value) and message in str(info.value)


def test_rounding_in_normalised_labels_is_clipped(tmp_path: Path) -> None:
    config = load_data_config(write_yolo(tmp_path))
    (tmp_path / "labels" / "train" / "img_a.txt").write_text("0 0.5 0.5 1.01 1.02\n")  # 0.32 and 0.48 px outside
    assert build_dataset(config, "train", skip_bad=False).targets(0)["boxes"].tolist() == [[0, 0, 64, 48]]


def test_unreadable_image_is_a_problem_at_build_time(tmp_path: Path) -> None:
    config = load_data_config(write_yolo(tmp_path))
    image = tmp_path / "images" / "train" / "img_b.jpg"
    image.write_bytes(b"not a jpeg")
    dataset = build_dataset(config, "train")
    assert dataset.image_ids == ["img_a", "img_c"]
    assert dataset.problems[0].path == str(image) and "cannot read image header" in dataset.problems[0].message


@pytest.mark.parametrize(
    "folder, message",
    [("images/none", "image folder not found"), ("pics", "'images' component"), ("images/empty", "no images")],
)
def test_bad_image_folders(tmp_path: Path, folder: str, message: str) -> None:
    (tmp_path / "pics").mkdir()
    (tmp_path / "images" / "empty").mkdir(parents=True)
    with pytest.raises(DataError, match=message) as info:
        YoloDataset(tmp_path / folder, TINY_CLASSES)
    assert info.value.path == str(tmp_path / folder)


def test_bulk_conversion_gives_what_the_line_by_line_parse_gives() -> None:
    """Files of good rows, blank lines, rounding, and each kind of bad line (field count, non-number, class id,
    empty and outside boxes), in images of different sizes: the same annotations and problems either way."""
    rng = np.random.default_rng(0)
    bad_lines = ["1 0.5 0.5 0.2", "x 0.5 0.5 0.2 0.2", "3 0.5 0.5 0.2 0.2", "1.5 0.5 0.5 0.2 0.2",
                 "1 0.5 0.5 0 0.2", "1 0.9 0.5 0.5 0.2", "0 0.5 0.5 0.2 0.2 7"]  # fmt: skip
    files = []
    for i in range(60):
        lines = [f"{rng.integers(3)} {rng.uniform(0.3, 0.7):.5f} {rng.uniform(0.3, 0.7):.5f} "
                 f"{rng.uniform(0.05, 0.5):.5f} {rng.uniform(0.05, 0.5):.5f}" for _ in range(rng.integers(0, 6))]  # fmt: skip
        if i % 4 == 1:
            lines.insert(int(rng.integers(len(lines) + 1)), bad_lines[i // 4 % len(bad_lines)])
        if i % 5 == 2:
            lines += ["", "  ", "0 0.5 0.5 1.01 1.02"]  # blank lines, then a box clipped by rounding
        fields = None if i % 11 == 3 else [line.split() for line in lines]
        width, height = int(rng.integers(40, 700)), int(rng.integers(40, 700))
        files.append(LabelFile(Path(f"images/{i}.jpg"), height, width, f"labels/{i}.txt", fields))
    bulk = annotations_in_bulk(files, 3)
    one_by_one = [read_lines(f, f.numbered_rows(), 3) for f in files]
    assert [problems for _, problems in bulk] == [problems for _, problems in one_by_one]
    refused = {i for i, (annotation, _) in enumerate(bulk) if annotation is None}
    given_a_bad_line = {i for i, f in enumerate(files) if i % 4 == 1 and f.lines is not None}
    assert given_a_bad_line <= refused and len(given_a_bad_line) == 14
    assert len(refused) < len(files) - 20  # most files are good ones
    for (a, _), (b, _) in zip(bulk, one_by_one):
        assert (a is None) == (b is None)
        if a is not None:
            assert (a.path, a.image_id, a.height, a.width, a.annotation_path) == (b.path, b.image_id, b.height,
                                                                                   b.width, b.annotation_path)  # fmt: skip
            for name in ("boxes_xyxy", "labels", "difficult", "iscrowd"):
                assert np.array_equal(getattr(a, name), getattr(b, name)), name
                assert getattr(a, name).dtype == getattr(b, name).dtype, name


def test_chunks_of_images_give_the_same_dataset_in_image_order(tmp_path: Path, monkeypatch) -> None:
    config = load_data_config(write_yolo(tmp_path))
    (tmp_path / "labels" / "train" / "img_b.txt").write_text("0 0.5 0.5 0.5\n")  # a bad line in the middle image
    monkeypatch.setenv("SSD_INDEX_CACHE", "off")
    whole = build_dataset(config, "train")
    monkeypatch.setattr(yolo, "CHUNK_IMAGES", 1)
    chunked = build_dataset(config, "train")
    assert chunked.image_ids == whole.image_ids == ["img_a", "img_c"]
    assert chunked.problems == whole.problems and [p.where for p in whole.problems] == ["line 1"]
    for i in range(len(whole)):
        torch.testing.assert_close(chunked.targets(i)["boxes"], whole.targets(i)["boxes"])


def test_a_folder_where_the_label_file_should_be_is_a_problem(tmp_path: Path) -> None:
    config = load_data_config(write_yolo(tmp_path))
    labels = tmp_path / "labels" / "train" / "img_a.txt"
    labels.unlink()
    labels.mkdir()
    dataset = build_dataset(config, "train")
    [problem] = dataset.problems
    assert problem.path == str(labels) and problem.message.startswith("cannot read label file:")
    assert "img_a" not in dataset.image_ids  # not silently an image without objects
