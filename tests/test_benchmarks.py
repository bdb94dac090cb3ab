import pytest

from timing import interleaved, rows


def test_interleaved_runs_variants_round_robin_after_warmup():
    calls = []
    variants = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    times = interleaved(variants, rounds=3, warmup=1, pause=0)
    assert calls == ["a", "b"] * 4  # warm-up round, then 3 measured rounds, alternating
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}


def test_interleaved_pauses_before_each_call_without_timing_the_pause():
    import time

    starts = []
    variants = {"a": lambda: starts.append(time.perf_counter()), "b": lambda: starts.append(time.perf_counter())}
    begin = time.perf_counter()
    times = interleaved(variants, rounds=2, warmup=0, pause=0.05)
    gaps = [later - earlier for earlier, later in zip([begin, *starts], starts)]
    assert all(gap >= 0.05 for gap in gaps)  # the cores were left idle before every call
    assert max(max(v) for v in times.values()) < 0.05  # but no call's time includes its pause


def test_rows_give_per_image_times_and_ratios_to_the_reference():
    times = {"torchvision fp32": [0.4, 0.8, 0.6], "ours": [0.3, 0.2, 0.5]}
    table = dict((name, rest) for name, *rest in rows(times, images_per_call=2, reference="torchvision fp32"))
    ms, images_per_s, ratio = table["ours"]
    assert ms == pytest.approx(150.0)  # median 0.3 s for 2 images
    assert images_per_s == pytest.approx(2 / 0.3)
    assert ratio == pytest.approx(0.3 / 0.6)
    assert table["torchvision fp32"][2] == pytest.approx(1.0)


def test_accuracy_of_modes_scores_every_mode_on_the_same_split(tmp_path):
    import torch

    import ssd
    from bench_vs_torchvision import accuracy_of_modes
    from model_helpers import TINY_128
    from ssd.data import build_dataset, load_data_config
    from ssd.data.shapes import SHAPES_CLASSES, generate_shapes

    data = generate_shapes(tmp_path / "shapes", num_train=4, num_val=0, num_test=8, image_size=128, num_workers=1)
    torch.manual_seed(0)
    model = ssd.build_model("ssd300_vgg16", 7, **{**TINY_128, "class_names": ["__background__", *SHAPES_CLASSES]})
    samples = [build_dataset(load_data_config(data), "test")[i] for i in range(8)]
    images, targets = (
        [s.image.float() / 255 for s in samples],
        [{"boxes": s.boxes, "labels": s.labels} for s in samples],
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(40):  # overfit the test images a little, so that the modes have detections to agree on
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ssd.save(model.eval(), tmp_path / "model.pt")

    table = accuracy_of_modes(tmp_path / "model.pt", data, workdir=tmp_path)
    rows = {}
    for line in table.splitlines()[2:]:
        name, value, diff = (cell.strip() for cell in line.strip("|").split("|"))
        rows[name] = (float(value), float(diff))
    assert list(rows) == ["pytorch fp32", "pytorch fp32 channels-last", "pytorch bf16 (autocast)",
                          "onnxruntime fp32", "onnxruntime int8"]  # fmt: skip
    fp32 = rows["pytorch fp32"][0]
    assert fp32 > 0 and rows["pytorch fp32"][1] == 0.0
    assert rows["pytorch fp32 channels-last"][0] == pytest.approx(fp32, abs=1e-4)
    assert rows["onnxruntime fp32"][0] == pytest.approx(fp32, abs=1e-4)
    for name, (value, diff) in rows.items():
        assert diff == pytest.approx(100 * (value - fp32), abs=0.011), name  # points, 2 decimals
    assert abs(rows["pytorch bf16 (autocast)"][0] - fp32) < 0.05
    assert (tmp_path / "model.int8.onnx").is_file()
