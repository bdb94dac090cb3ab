"""Predictor against the model called directly, its filters and batching; predict_sources on files, folders,
globs and a video, with the annotated outputs, predictions.json and the COCO results file."""

import copy
import json
import sys
from pathlib import Path

import pytest
import torch
from torchvision.io import write_jpeg, write_png
from torchvision.ops import box_convert, box_iou

import ssd
from model_helpers import CLASS_NAMES, tiny_model_with_spread_scores
from ssd.data.dataset import read_image
from ssd.engine.predict import predict_sources
from ssd.engine.predictor import Predictor
from ssd.engine.sources import expand_sources
from ssd.errors import DataError, SSDError
from ssd.viz import draw_detections

SIZES = [(60, 80), (48, 48), (45, 70), (90, 60)]  # (height, width)


@pytest.fixture(scope="module")
def model() -> ssd.SSD:
    return tiny_model_with_spread_scores()


def random_images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, 256, (3, h, w), generator=generator, dtype=torch.uint8) for h, w in SIZES]


def reference(model: ssd.SSD, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The model itself on one image, as the Predictor must reproduce it."""
    with torch.no_grad():
        return model([image.float() / 255])[0]


def assert_same(got: dict, expected: dict) -> None:
    assert len(got["scores"]) > 0
    assert torch.equal(got["labels"], expected["labels"])
    assert torch.equal(got["scores"], expected["scores"])
    assert torch.equal(got["boxes"], expected["boxes"])


def test_predictor_on_path_tensor_and_list_equals_the_model(model, tmp_path):
    image = random_images()[0]
    write_png(image, str(tmp_path / "a.png"))
    expected = reference(model, image)
    predictor = Predictor(model, batch_size=1)

    from_path = predictor(tmp_path / "a.png")
    assert len(from_path) == 1 and from_path[0]["path"] == str(tmp_path / "a.png")
    assert_same(from_path[0], expected)
    assert_same(predictor(image)[0], expected)
    assert_same(predictor(image.float() / 255)[0], expected)
    as_list = predictor([str(tmp_path / "a.png"), image])
    assert len(as_list) == 2 and "path" not in as_list[1]
    for det in as_list:
        assert_same(det, expected)
    assert from_path[0]["names"] == [CLASS_NAMES[i] for i in expected["labels"].tolist()]


def test_checkpoint_path_loads_the_same_model_in_channels_last_on_cpu(model, tmp_path):
    ssd.save(model, tmp_path / "tiny.pt")
    predictor = Predictor(tmp_path / "tiny.pt", device="cpu")
    loaded = predictor.detector.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    assert predictor.detector.net.backbone.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    image = random_images()[1]
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    assert_same(predictor(image)[0], reference(channels_last, image))
    plain = reference(model, image)  # the contiguous layout: the same detections to float rounding
    assert torch.equal(predictor(image)[0]["labels"], plain["labels"])
    torch.testing.assert_close(predictor(image)[0]["scores"], plain["scores"], rtol=0, atol=1e-5)


def test_onnxruntime_backend_matches_the_torch_model(model, tmp_path):
    pytest.importorskip("onnxruntime")
    from ssd.export import export_onnx

    path = export_onnx(model, tmp_path / "tiny.onnx", verify=False)
    images = random_images()
    by_ort = Predictor(path, backend="onnxruntime", conf=0.9, classes=["dog", "bird"], batch_size=4)(images)
    by_torch = Predictor(model, conf=0.9, classes=["dog", "bird"], batch_size=4)(images)
    for a, b in zip(by_ort, by_torch):
        assert len(a["scores"]) > 0 and torch.equal(a["labels"], b["labels"]) and a["names"] == b["names"]
        torch.testing.assert_close(a["scores"], b["scores"], atol=1e-5, rtol=0)
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-3, rtol=0)
    with pytest.raises(SSDError, match="onnxruntime"):
        Predictor(path)


def test_filters_conf_max_det_classes(model):
    image = random_images()[2]
    expected = reference(model, image)
    scores, labels = expected["scores"], expected["labels"]
    conf = float(scores.median())

    kept = Predictor(model, conf=conf)(image)[0]
    assert len(kept["scores"]) == int((scores >= conf).sum()) > 0
    assert bool((kept["scores"] >= conf).all())

    top = Predictor(model, max_det=5)(image)[0]
    assert torch.equal(top["scores"], scores.sort(descending=True).values[:5])

    dogs = Predictor(model, classes=[2])(image)[0]
    assert len(dogs["labels"]) == int((labels == 2).sum()) > 0
    assert set(dogs["labels"].tolist()) == {2} and set(dogs["names"]) == {"dog"}
    by_name = Predictor(model, classes=["dog", "bird"], conf=conf, max_det=3)(image)[0]
    assert len(by_name["scores"]) == min(3, int(((labels >= 2) & (scores >= conf)).sum()))
    assert set(by_name["labels"].tolist()) <= {2, 3} and bool((by_name["scores"] >= conf).all())


def test_batch_size_does_not_change_the_detections(model):
    images = random_images()
    one = Predictor(model, batch_size=1)(images)
    three = Predictor(model, batch_size=3)(images)  # batches of 3 and 1
    for a, b in zip(one, three):
        # convolutions on batches of other sizes round differently in the last bits of float32
        assert torch.equal(a["labels"], b["labels"]) and a["names"] == b["names"]
        torch.testing.assert_close(a["scores"], b["scores"], atol=1e-5, rtol=0)
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-3, rtol=0)


def test_bf16_precision_runs_the_convolutions_in_bf16_and_finds_the_same_objects(model):
    conv_dtypes = []
    hook = model.net.head.conf[0].register_forward_hook(lambda m, i, out: conv_dtypes.append(out.dtype))
    try:
        images = random_images()
        fp32 = Predictor(model)(images)
        bf16 = Predictor(model, precision="bf16")(images)
    finally:
        hook.remove()
    assert conv_dtypes == [torch.float32, torch.bfloat16]  # one batch each
    for a, b in zip(fp32, bf16):
        assert b["boxes"].dtype == torch.float32 and len(b["scores"]) > 0
        # bf16 keeps 8 bits of mantissa: scores move by about 1%, so near-ties reorder; but each of the 10 best fp32
        # detections is still found, same class, same place
        for box, label, score in zip(a["boxes"][:10], a["labels"][:10], a["scores"][:10]):
            same_class = b["labels"] == label
            assert same_class.any()
            assert box_iou(box[None], b["boxes"][same_class]).max() > 0.9
            assert (b["scores"][same_class] - score).abs().min() < 0.03


def test_bad_arguments_and_inputs_are_clear_errors(model, tmp_path):
    with pytest.raises(SSDError, match="conf"):
        Predictor(model, conf=1.5)
    with pytest.raises(SSDError, match="max_det"):
        Predictor(model, max_det=0)
    with pytest.raises(SSDError, match="'horse'"):
        Predictor(model, classes=["horse"])
    with pytest.raises(SSDError, match="class 4"):
        Predictor(model, classes=[4])
    with pytest.raises(SSDError, match="backend"):
        Predictor(model, backend="tensorrt")
    with pytest.raises(SSDError, match="fp16 needs a CUDA device"):
        Predictor(model, precision="fp16")
    with pytest.raises(SSDError, match="unknown precision 'int4'"):
        Predictor(model, precision="int4")
    with pytest.raises(SSDError, match="precision bf16 is for the torch backend"):
        Predictor(tmp_path / "model.onnx", backend="onnxruntime", precision="bf16")
    with pytest.raises(SSDError, match=r"\[3, H, W\]"):
        Predictor(model)(torch.zeros(1, 8, 8))
    with pytest.raises(DataError, match="missing.png"):
        Predictor(model)(tmp_path / "missing.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        Predictor(model)(tmp_path / "broken.jpg")


def write_image_folder(folder: Path) -> dict[str, torch.Tensor]:
    """Two PNGs, one JPEG and a text file; returns the images as they decode."""
    folder.mkdir()
    images = random_images()
    write_png(images[0], str(folder / "001.png"))
    write_png(images[1], str(folder / "b.png"))
    write_jpeg(images[2], str(folder / "c.jpg"))
    (folder / "notes.txt").write_text("not an image")
    return {name: read_image(folder / name) for name in ("001.png", "b.png", "c.jpg")}


def test_predict_sources_on_a_folder(model, tmp_path):
    images = write_image_folder(tmp_path / "in")
    predictor = Predictor(model, conf=0.9, max_det=40, batch_size=2)
    summary = predict_sources(predictor, [tmp_path / "in"], tmp_path / "out", coco_json=True, progress=False)

    expected = dict(zip(images, predictor.detect(list(images.values()))))  # batched as predict_sources does
    total = sum(len(det["scores"]) for det in expected.values())
    assert total > 0
    assert summary["images"] == 3 and summary["frames"] == 0 and summary["detections"] == total
    for name, image in images.items():
        annotated = read_image(tmp_path / "out" / name)
        assert annotated.shape == image.shape
        if name.endswith(".png"):  # lossless: exactly the drawing of the kept detections
            det = expected[name]
            drawn = draw_detections(image, det["boxes"], det["labels"], det["scores"], CLASS_NAMES)
            assert torch.equal(annotated, drawn)

    entries = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [Path(e["path"]).name for e in entries] == ["001.png", "b.png", "c.jpg"]  # sorted, .txt left out
    for entry, (name, image) in zip(entries, images.items()):
        det = expected[name]
        assert (entry["height"], entry["width"]) == tuple(image.shape[-2:])
        assert entry["labels"] == det["labels"].tolist() and entry["names"] == det["names"]
        assert all(s >= 0.9 for s in entry["scores"]) and len(entry["scores"]) <= 40
        torch.testing.assert_close(torch.tensor(entry["boxes"]).view(-1, 4), det["boxes"], atol=0.006, rtol=0)
        torch.testing.assert_close(torch.tensor(entry["scores"]), det["scores"], atol=6e-6, rtol=0)

    coco = json.loads((tmp_path / "out" / "detections_coco.json").read_text())
    assert len(coco) == total
    assert {r["image_id"] for r in coco} == {1, "b", "c"}  # the stem "001" as a number
    first = [r for r in coco if r["image_id"] == 1]
    det = expected["001.png"]
    assert [r["category_id"] for r in first] == det["labels"].tolist()
    expected_xywh = box_convert(det["boxes"], "xyxy", "xywh").double()
    torch.testing.assert_close(torch.tensor([r["bbox"] for r in first], dtype=torch.float64), expected_xywh)


def test_predict_sources_on_a_glob_and_a_file(model, tmp_path):
    images = write_image_folder(tmp_path / "in")
    predictor = Predictor(model, conf=0.9)
    summary = predict_sources(predictor, [str(tmp_path / "in" / "*.png")], tmp_path / "glob", progress=False)
    assert summary["images"] == 2
    assert sorted(p.name for p in (tmp_path / "glob").iterdir()) == [
        "001.png",
        "b.png",
        "predictions.json",
        "predictions.jsonl",
    ]

    summary = predict_sources(
        predictor, [tmp_path / "in" / "c.jpg"], tmp_path / "one", save_images=False, coco_json=False
    )
    assert summary["outputs"] == [] and summary["coco_json"] is None
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["predictions.json", "predictions.jsonl"]
    (entry,) = json.loads((tmp_path / "one" / "predictions.json").read_text())
    assert entry["path"] == str(tmp_path / "in" / "c.jpg") and len(entry["scores"]) == summary["detections"]
    assert (entry["height"], entry["width"]) == tuple(images["c.jpg"].shape[-2:])


def test_same_file_name_in_two_folders_gets_two_outputs(model, tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        write_png(random_images()[1], str(tmp_path / folder / "a.png"))
    predict_sources(Predictor(model), [tmp_path / "x", tmp_path / "y"], tmp_path / "out", save_json=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "a_1.png"]


def test_bad_sources_name_the_path(model, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "table.csv").write_text("a,b\n")
    cases = [
        (tmp_path / "nowhere", "no such file or folder"),
        (tmp_path / "empty", "no images"),
        (tmp_path / "table.csv", "unknown file type '.csv'"),
        (tmp_path / "*.jpg", "no images or videos match"),
    ]
    for source, message in cases:
        with pytest.raises(DataError, match=message) as info:
            expand_sources([source])
        assert info.value.path == str(source)
    write_png(random_images()[1], str(tmp_path / "a.png"))
    with pytest.raises(DataError, match="overwrite"):
        predict_sources(Predictor(model), [tmp_path / "a.png"], tmp_path, progress=False)


def test_videos_need_pyav(model, tmp_path, monkeypatch):
    (tmp_path / "clip.mp4").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "av", None)  # import av now fails, as without the package
    with pytest.raises(SSDError, match="pip install av"):
        predict_sources(Predictor(model), [tmp_path / "clip.mp4"], tmp_path / "out")


def test_predict_sources_on_a_video(model, tmp_path):
    av = pytest.importorskip("av")
    generator = torch.Generator().manual_seed(2)
    frames = [torch.randint(0, 256, (48, 64, 3), generator=generator, dtype=torch.uint8) for _ in range(6)]
    with av.open(str(tmp_path / "clip.mp4"), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame.numpy(), format="rgb24")))
        container.mux(stream.encode())
    with av.open(str(tmp_path / "clip.mp4")) as container:  # the frames as the predictor will see them
        decoded = [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1) for f in container.decode(video=0)]

    predictor = Predictor(model, conf=0.9, batch_size=4)  # chunks of 4 and 2 frames
    summary = predict_sources(predictor, [tmp_path / "clip.mp4"], tmp_path / "out", coco_json=True, progress=False)
    assert summary["videos"] == 1 and summary["frames"] == 6
    assert summary["outputs"] == [str(tmp_path / "out" / "clip_pred.mp4")]

    with av.open(str(tmp_path / "out" / "clip_pred.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (64, 48) and stream.average_rate == 10
        assert sum(1 for _ in container.decode(stream)) == 6

    entries = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [e["frame"] for e in entries] == list(range(6))
    for entry, det in zip(entries, predictor.detect(decoded)):
        assert (entry["width"], entry["height"]) == (64, 48) and entry["path"] == str(tmp_path / "clip.mp4")
        assert entry["labels"] == det["labels"].tolist()
        torch.testing.assert_close(torch.tensor(entry["scores"]), det["scores"], atol=1e-5, rtol=0)
    coco = json.loads((tmp_path / "out" / "detections_coco.json").read_text())
    assert len(coco) == summary["detections"] > 0 and {r["image_id"] for r in coco} <= set(range(6))

    (tmp_path / "broken.mp4").write_bytes(b"not a video" * 100)
    with pytest.raises(DataError, match="broken.mp4: cannot open video"):
        predict_sources(predictor, [tmp_path / "broken.mp4"], tmp_path / "out", progress=False)


def test_sixteen_bit_tiff_gif_and_rotated_photos_are_predicted_as_shown(model, tmp_path):
    import numpy as np
    import PIL.Image

    folder = tmp_path / "in"
    folder.mkdir()
    ramp = (np.arange(60 * 80, dtype=np.uint16).reshape(60, 80) * 13).astype(np.uint16)
    PIL.Image.fromarray(ramp).save(folder / "depth16.png")
    PIL.Image.fromarray(ramp).save(folder / "microscope.tif")
    PIL.Image.new("RGB", (70, 45), (200, 40, 40)).convert("P").save(folder / "anim.gif")
    stored = PIL.Image.new("RGB", (80, 50), (30, 160, 90))
    exif = stored.getexif()
    exif[0x0112] = 6  # a portrait photo as a phone stores it
    stored.save(folder / "portrait.jpg", exif=exif.tobytes())
    summary = predict_sources(Predictor(model, conf=0.5), [folder], tmp_path / "out", progress=False)
    assert summary["images"] == 4
    entries = {Path(e["path"]).name: e for e in json.loads((tmp_path / "out" / "predictions.json").read_text())}
    assert (entries["portrait.jpg"]["height"], entries["portrait.jpg"]["width"]) == (80, 50)  # upright
    assert (entries["depth16.png"]["height"], entries["depth16.png"]["width"]) == (60, 80)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [
        "anim.png",
        "depth16.png",
        "microscope.png",
        "portrait.jpg",
        "predictions.json",
        "predictions.jsonl",
    ]
    assert read_image(tmp_path / "out" / "portrait.jpg").shape == (3, 80, 50)


def write_broken_files(folder: Path) -> list[Path]:
    """An empty JPEG, a truncated PNG and a text file named like a PNG in ``folder``; returns their paths."""
    empty, truncated, text = folder / "empty.jpg", folder / "truncated.png", folder / "text.png"
    empty.write_bytes(b"")
    write_png(random_images()[0], str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:200])
    text.write_text("a PNG in name only")
    return [empty, truncated, text]


def test_unreadable_sources_are_skipped_named_and_the_rest_predicted(model, tmp_path, caplog):
    images = write_image_folder(tmp_path / "in")
    broken = write_broken_files(tmp_path / "in")
    (tmp_path / "table.csv").write_text("a,b\n")
    missing, table = tmp_path / "nowhere.jpg", tmp_path / "table.csv"
    predictor = Predictor(model, conf=0.9, batch_size=2)  # each batch holds a broken file
    with caplog.at_level("WARNING", logger="ssd.engine.predict"):
        summary = predict_sources(predictor, [tmp_path / "in", missing, table], tmp_path / "out", progress=False)

    skipped = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert summary["images"] == 3 and sorted(skipped) == ["empty.jpg", "nowhere.jpg", "table.csv", "text.png",
                                                          "truncated.png"]  # fmt: skip
    assert skipped["nowhere.jpg"] == "no such file or folder" and "unknown file type '.csv'" in skipped["table.csv"]
    assert all(reason.startswith("cannot decode image") for name, reason in skipped.items() if name in
               ("empty.jpg", "text.png", "truncated.png"))  # fmt: skip
    assert len(caplog.records) == 5 and all(r.getMessage().startswith("skipped ") for r in caplog.records)
    assert json.loads((tmp_path / "out" / "skipped.json").read_text()) == summary["skipped"]

    entries = json.loads((tmp_path / "out" / "predictions.json").read_text())
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert lines == entries and [Path(e["path"]).name for e in entries] == list(images)
    for entry, det in zip(entries, predictor.detect(list(images.values()))):
        assert entry["labels"] == det["labels"].tolist()
    assert not any((tmp_path / "out" / p.name).exists() for p in broken)

    with pytest.raises(DataError, match="nothing else could be read") as info:
        predict_sources(predictor, [*broken, missing], tmp_path / "none", progress=False)
    assert info.value.path == str(missing)  # the sources that give no file are named first


def test_a_stopped_run_writes_the_batches_it_finished(model, tmp_path, monkeypatch):
    import os
    import signal

    write_image_folder(tmp_path / "in")
    predictor = Predictor(model, batch_size=1)
    real_detect, calls = predictor.detect, []

    def detect_then_stop(images):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C during the second batch: it finishes, the third is not started
            os.kill(os.getpid(), signal.SIGINT)
        return real_detect(images)

    monkeypatch.setattr(predictor, "detect", detect_then_stop)
    summary = predict_sources(predictor, [tmp_path / "in"], tmp_path / "out", progress=False)
    assert summary["interrupted"] and summary["images"] == 2 and len(calls) == 2
    entries = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [Path(e["path"]).name for e in entries] == ["001.png", "b.png"]


def test_predictor_on_a_list_raises_or_reports_an_unreadable_file(model, tmp_path):
    images = write_image_folder(tmp_path / "in")
    (broken,) = write_broken_files(tmp_path / "in")[:1]
    good = tmp_path / "in" / "b.png"
    predictor = Predictor(model, batch_size=2)
    with pytest.raises(DataError, match="empty.jpg: cannot decode image"):
        predictor([good, broken])
    results = predictor([good, broken, images["c.jpg"]], on_error="report")
    assert [r["path"] for r in results[:2]] == [str(good), str(broken)] and "path" not in results[2]
    assert results[1]["error"].startswith("cannot decode image") and len(results[1]["boxes"]) == 0
    assert results[1]["boxes"].shape == (0, 4) and results[1]["names"] == []
    assert "error" not in results[0] and "error" not in results[2]
    assert_same(results[0], predictor(good)[0])
    assert_same(results[2], predictor(images["c.jpg"])[0])
    with pytest.raises(SSDError, match="on_error must be one of raise, report"):
        predictor([good], on_error="ignore")


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_predictor_stream_over_http_is_one_result_per_frame_in_flat_memory(model, tmp_path):
    pytest.importorskip("av")
    from stream_helpers import decoded_frames, http_server, moving_square_frames, write_video

    path = write_video(tmp_path / "long.ts", moving_square_frames(300, 240, 320))  # 230 kB a frame
    expected = Predictor(model).detect(decoded_frames(path)[:3])
    predictor = Predictor(model, conf=0.5)
    with http_server(tmp_path) as url:
        numbers, after_50 = [], 0
        for result in predictor.stream(f"{url}/long.ts"):
            numbers.append(result["frame"])
            if result["frame"] < 3:
                want = predictor.filter(expected[result["frame"]])
                assert torch.equal(result["labels"], want["labels"])
                torch.testing.assert_close(result["scores"], want["scores"], atol=1e-5, rtol=0)
            if result["frame"] == 50:
                after_50 = resident_bytes()
        growth = resident_bytes() - after_50
    assert numbers == list(range(300)) and (result["width"], result["height"]) == (320, 240)
    # 250 kept frames would add well over 6 MiB
    assert growth < 6 * 2**20, f"memory grew by {growth / 2**20:.1f} MiB over 250 frames"


def test_predict_sources_on_a_stream_every_second_frame(model, tmp_path):
    pytest.importorskip("av")
    from stream_helpers import http_server, moving_square_frames, write_video

    write_video(tmp_path / "cam.ts", moving_square_frames(12, 48, 64))
    with http_server(tmp_path) as url:
        summary = predict_sources(
            Predictor(model, conf=0.9), [f"{url}/cam.ts"], tmp_path / "out", vid_stride=2, progress=False
        )
    assert (
        summary["videos"] == 1
        and summary["frames"] == 6
        and summary["outputs"] == [str(tmp_path / "out" / "cam_pred.mp4")]
    )
    entries = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [e["frame"] for e in entries] == [0, 2, 4, 6, 8, 10] and entries[0]["path"] == f"{url}/cam.ts"
    assert json.loads((tmp_path / "out" / "predictions.json").read_text()) == entries
    import av

    with av.open(str(tmp_path / "out" / "cam_pred.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 12.5 and sum(1 for _ in container.decode(stream)) == 6
    with pytest.raises(SSDError, match="vid_stride must be at least 1"):
        predict_sources(Predictor(model), [f"{url}/cam.ts"], tmp_path / "bad", vid_stride=0)


def test_outputs_and_coco_ids_are_unique_by_stem(model, tmp_path):
    images = random_images()
    for folder, name in (("x", "a.png"), ("y", "a.png"), ("x", "a.jpg"), ("x", "1.png"), ("x", "01.png")):
        (tmp_path / folder).mkdir(exist_ok=True)
        (write_jpeg if name.endswith(".jpg") else write_png)(images[0], str(tmp_path / folder / name))
    sources = [tmp_path / "x" / n for n in ("a.png", "a.jpg", "1.png", "01.png")] + [tmp_path / "y" / "a.png"]
    summary = predict_sources(Predictor(model, conf=0.9), sources, tmp_path / "out", coco_json=True, progress=False)
    assert [Path(p).name for p in summary["outputs"]] == ["a.png", "a_1.jpg", "1.png", "01.png", "a_2.png"]
    ids = {r["image_id"] for r in json.loads((tmp_path / "out" / "detections_coco.json").read_text())}
    assert ids == {"a", "a_1", 1, "01", "a_2"}  # 01 would be 1 again: it keeps its name
