"""predict_dataset: detections mapped back to each original image, empty batches skipped."""

import torch

from ssd.engine.evaluate import predict_dataset


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
