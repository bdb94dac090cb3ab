"""Run folders: numbered train, train2, ... folders, named folders and when they are refused."""

import pytest

from ssd.engine.runs import new_run_dir, numbered
from ssd.errors import SSDError


def test_numbered_names():
    assert [numbered("train", n) for n in (1, 2, 3, 10)] == ["train", "train2", "train3", "train10"]
    assert numbered("eval", 1) == "eval" and numbered("predict", 4) == "predict4"


def test_numbering_counts_on_as_folders_appear(tmp_path):
    got = []
    for _ in range(4):
        path = new_run_dir(tmp_path, None, exist_ok=False)
        got.append(path.name)
        path.mkdir()
    assert got == ["train", "train2", "train3", "train4"]
    assert new_run_dir(tmp_path, None, exist_ok=False) == tmp_path / "train5"


def test_numbering_fills_the_first_gap(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train3").mkdir()
    assert new_run_dir(tmp_path, None, exist_ok=False) == tmp_path / "train2"


def test_a_file_also_takes_the_name(tmp_path):
    (tmp_path / "train").write_text("not a folder")
    assert new_run_dir(tmp_path, None, exist_ok=False) == tmp_path / "train2"


@pytest.mark.parametrize("prefix", ["eval", "predict"])
def test_prefixes_number_independently(tmp_path, prefix):
    (tmp_path / "train").mkdir()
    (tmp_path / "train2").mkdir()
    assert new_run_dir(tmp_path, None, exist_ok=False, prefix=prefix) == tmp_path / prefix
    (tmp_path / prefix).mkdir()
    assert new_run_dir(tmp_path, None, exist_ok=False, prefix=prefix) == tmp_path / f"{prefix}2"


def test_a_named_non_empty_folder_is_refused_unless_exist_ok(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "last.pt").write_text("weights")
    with pytest.raises(SSDError, match=r"exp already exists.*--exist-ok.*--resume"):
        new_run_dir(tmp_path, "exp", exist_ok=False)
    assert new_run_dir(tmp_path, "exp", exist_ok=True) == tmp_path / "exp"


def test_a_named_empty_or_missing_folder_is_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    assert new_run_dir(tmp_path, "empty", exist_ok=False) == tmp_path / "empty"
    assert new_run_dir(tmp_path, "new", exist_ok=False) == tmp_path / "new"
    assert new_run_dir(tmp_path / "nested" / "project", "x", exist_ok=False) == tmp_path / "nested" / "project" / "x"


def test_nothing_is_created(tmp_path):
    project = tmp_path / "runs"
    assert new_run_dir(project, None, exist_ok=False) == project / "train"
    assert new_run_dir(project, "named", exist_ok=True) == project / "named"
    assert not project.exists()
    (tmp_path / "train").mkdir()
    new_run_dir(tmp_path, None, exist_ok=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]
