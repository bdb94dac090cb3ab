import pytest
import torch

import ssd
from ssd.errors import DataError


def _small_model():
    return ssd.build_model("ssd300_vgg16", 5, width=0.125, class_names=["__background__", "a", "b", "c", "d"]).eval()


def test_round_trip_rebuilds_model_and_outputs(tmp_path):
    model = _small_model()
    path = tmp_path / "sub" / "model.pt"
    ssd.save(model, path, epoch=3)
    loaded = ssd.load(path)
    assert loaded.config == model.config
    assert not loaded.training
    x = [torch.rand(3, 120, 90)]
    loaded.to(memory_format=torch.contiguous_format)  # load gives the inference layout; compare in one layout
    with torch.no_grad():
        a, b = model.eval().to(memory_format=torch.contiguous_format)(x)[0], loaded(x)[0]
    torch.testing.assert_close(a["boxes"], b["boxes"])
    torch.testing.assert_close(a["scores"], b["scores"])
    raw = torch.load(path, weights_only=True)
    assert raw["epoch"] == 3 and raw["config"]["class_names"][1] == "a"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    model = _small_model()
    path = tmp_path / "last.pt"
    ssd.save(model, path)
    before = path.read_bytes()

    def failing_save(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        ssd.save(model, path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    with pytest.raises(DataError, match="not found"):
        ssd.load(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pt: cannot read checkpoint"):
        ssd.load(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(DataError, match="not an ssd-detector checkpoint"):
        ssd.load(foreign)
