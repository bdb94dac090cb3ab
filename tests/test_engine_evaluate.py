import torch

from ssd.engine.evaluate import format_table, predict_dataset


def test_predict_dataset_maps_boxes_back_and_skips_empty_batches():
    def detector(images):  # one box covering the warped image
        return [
            {
                "boxes": torch.tensor([[0.0, 0.0, 100.0, 100.0]]),
                "scores": torch.tensor([0.9]),
                "labels": torch.tensor([1]),
            }
            for _ in images
        ]

    image = torch.zeros(3, 100, 100)  # warped to 100 x 100; the original was 50 high, 200 wide
    target = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "image_id": "a",
        "orig_size": torch.tensor([50, 200]),
    }
    twin = {**target, "image_id": "a"}  # same id, another image: both must be kept in one process
    loader = [([], []), ([image, image], [target, twin])]
    dets, targets = predict_dataset(detector, loader, torch.device("cpu"), progress=False)
    assert len(dets) == len(targets) == 2
    torch.testing.assert_close(dets[0]["boxes"], torch.tensor([[0.0, 0.0, 200.0, 50.0]]))


def test_format_table_lists_classes_gt_and_mean():
    results = {"voc07": {"map": 0.5, "per_class": {1: 0.25, 2: None}, "num_gt": {1: 3, 2: 0}}}
    lines = format_table(results, ["__background__", "cat", "dog"]).splitlines()
    assert lines[1].split() == ["cat", "3", "0.2500"]
    assert lines[2].split() == ["dog", "0", "-"]
    assert lines[-1].split() == ["mean", "3", "0.5000"]
