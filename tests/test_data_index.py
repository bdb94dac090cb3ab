import pickle

import numpy as np
import pytest
import torch

from data_helpers import (
    write_coco,
    write_cvat,
    write_labelimg,
    write_labelme,
    write_roboflow_coco,
    write_roboflow_yolo,
    write_voc,
    write_yolo,
)
from ssd.data import build_dataset, load_data_config
from ssd.data.cache import CACHE_FOLDER
from ssd.data.index import AnnotationIndex, read_index_file

WRITERS = [write_voc, write_coco, write_yolo, write_labelimg, write_roboflow_coco, write_roboflow_yolo, write_cvat,
           write_labelme]  # fmt: skip


def contents(dataset):
    """Everything a dataset holds of its split, without decoding images."""
    table = {k: v.tolist() for k, v in dataset.box_table().items()}
    return (list(dataset.paths), list(dataset.image_ids), list(dataset.annotation_paths), dataset.class_names,
            dataset.names_source, [str(p) for p in dataset.problems], table,
            getattr(dataset, "label_to_category_id", None))  # fmt: skip


def index_files(root):
    return sorted(root.rglob(f"{CACHE_FOLDER}/*.idx"))


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.__name__)
def test_the_index_gives_the_readers_samples_on_every_format(tmp_path, monkeypatch, writer):
    data = load_data_config(writer(tmp_path))
    monkeypatch.setenv("SSD_INDEX_CACHE", "off")
    parsed = build_dataset(data, "train")
    assert not index_files(tmp_path)
    monkeypatch.setenv("SSD_INDEX_CACHE", "on")
    first, reloaded = build_dataset(data, "train"), build_dataset(data, "train")
    assert len(index_files(tmp_path)) == 1
    assert contents(first) == contents(parsed) == contents(reloaded)
    assert reloaded.index.file is not None  # the reload is the mapped file, not a new parse
    assert isinstance(reloaded._boxes.base, np.memmap | np.ndarray) and not reloaded._boxes.flags.writeable
    for i in range(len(parsed)):
        sample, again = parsed[i], reloaded[i]
        assert torch.equal(sample.image, again.image) and torch.equal(sample.boxes, again.boxes)
        assert sample.image_id == again.image_id and sample.path == again.path


def test_an_edited_annotation_file_of_the_same_size_is_parsed_again(tmp_path):
    data = load_data_config(write_coco(tmp_path))
    before = build_dataset(data, "train")
    json_file = tmp_path / "annotations" / "train.json"
    text = json_file.read_text()
    edited = text.replace('"category_id": 1', '"category_id": 2', 1)
    assert edited != text and len(edited) == len(text)
    json_file.write_text(edited)
    after = build_dataset(data, "train")
    assert after.box_table()["labels"].tolist() != before.box_table()["labels"].tolist()
    load_data_config(write_coco(tmp_path / "fresh"))  # the same edit, parsed without any cache
    (tmp_path / "fresh" / "annotations" / "train.json").write_text(edited)
    fresh = build_dataset(load_data_config(tmp_path / "fresh" / "data.yaml"), "train")
    assert after.box_table()["labels"].tolist() == fresh.box_table()["labels"].tolist()


def test_an_added_image_invalidates_the_index(tmp_path):
    data = load_data_config(write_yolo(tmp_path))
    before = build_dataset(data, "train")
    extra = tmp_path / "images" / "train" / "extra.jpg"
    extra.write_bytes((tmp_path / "images" / "train" / f"{before.image_ids[0]}.jpg").read_bytes())
    assert len(build_dataset(data, "train")) == len(before) + 1


@pytest.mark.parametrize("damage", ["truncate", "flip a byte", "garbage"])
def test_a_damaged_index_file_is_never_trusted(tmp_path, damage):
    data = load_data_config(write_voc(tmp_path))
    expected = contents(build_dataset(data, "train"))
    (path,) = index_files(tmp_path)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) - 8]
    elif damage == "flip a byte":
        raw[-20] ^= 0xFF  # inside the last array: only the digest can tell
    else:
        raw = bytearray(b"not an index")
    path.write_bytes(bytes(raw))
    assert read_index_file(path) is None
    assert contents(build_dataset(data, "train")) == expected
    assert read_index_file(path) is not None  # rewritten


def test_a_mapped_index_pickles_as_its_file_name(tmp_path):
    data = load_data_config(write_coco(tmp_path))
    build_dataset(data, "train")
    dataset = build_dataset(data, "train")
    state = pickle.dumps(dataset.index)
    assert len(state) < 1000  # the file name, not the arrays
    copy = pickle.loads(state)
    assert isinstance(copy, AnnotationIndex) and list(copy.paths) == list(dataset.paths)
    assert np.array_equal(copy.boxes, dataset.index.boxes)


def test_keep_difficult_false_drops_difficult_rows_from_a_mapped_index(tmp_path):
    data = load_data_config(write_voc(tmp_path))
    build_dataset(data, "train")
    kept, dropped = build_dataset(data, "train"), build_dataset(data, "train", keep_difficult=False)
    difficult = kept.box_table()["difficult"]
    assert difficult.any()
    assert len(dropped.box_table()["labels"]) == len(difficult) - int(difficult.sum())
    for i in range(len(kept)):
        assert torch.equal(dropped.targets(i)["boxes"], kept.targets(i)["boxes"][~kept.targets(i)["difficult"]])


def test_an_unwritable_folder_falls_back_to_the_cache_dir(tmp_path, monkeypatch):
    data = load_data_config(write_coco(tmp_path / "data"))
    (tmp_path / "data" / "annotations" / CACHE_FOLDER).write_text("a file where the folder would go")
    monkeypatch.setenv("SSD_CACHE_DIR", str(tmp_path / "cache"))
    build_dataset(data, "train")
    assert len(list((tmp_path / "cache").glob("*.idx"))) == 1
    assert build_dataset(data, "train").index.file.parent == tmp_path / "cache"
