"""The tiny test SSDs, as ModelConfig overrides of ssd300_vgg16, and a tiny model for inference and export tests."""

import torch

import ssd

CLASS_NAMES = ["__background__", "cat", "dog", "bird"]
# Two sizes: TINY_96 is the cheapest (training runs, the CLI); TINY_128 has the shapes config's layout, five maps
# down to 1x1 and batch norm, for inference, export and the demo.
# 4 source maps (12, 6, 3, 2), 844 default boxes, no batch norm
TINY_96 = dict(
    input_size=96,
    width=0.125,
    extras=[[256, 512, 3, 2, 1], [128, 256, 3, 2, 1]],
    aspect_ratios=[[2], [2, 3], [2], [2]],
    min_sizes=[10, 25, 45, 70],
    max_sizes=[25, 45, 70, 96],
    steps=None,
)
# 5 source maps (16, 8, 4, 2, 1), 1524 default boxes, batch norm
TINY_128 = dict(
    width=0.125,
    batch_norm=True,
    input_size=128,
    extras=[[256, 512, 3, 2, 1], [128, 256, 3, 2, 1], [128, 256, 3, 2, 1]],
    aspect_ratios=[[2], [2, 3], [2, 3], [2], [2]],
    min_sizes=[12, 28, 50, 80, 105],
    max_sizes=[28, 50, 80, 105, 135],
    steps=None,
)


def tiny_model_with_spread_scores() -> ssd.SSD:
    """The TINY_128 SSD (4 classes, eval mode) with a scaled-down class head: logits of std ~1, so scores spread over
    0..1 without float ties and every image gets its full 200 detections."""
    torch.manual_seed(0)
    model = ssd.build_model("ssd300_vgg16", 4, class_names=CLASS_NAMES, **TINY_128).eval()
    with torch.no_grad():
        for layer in model.net.head.conf:
            layer.weight.mul_(0.3)
    return model


def export_detection_and_raw(model: ssd.SSD, folder) -> dict:
    """The model exported to ONNX twice, unverified: ``{"detections": path, "raw": path}`` in ``folder``."""
    from ssd.export import export_onnx

    return {
        "detections": export_onnx(model, folder / "tiny.onnx", verify=False),
        "raw": export_onnx(model, folder / "tiny_raw.onnx", raw=True, verify=False),
    }


def overfit(model: ssd.SSD, images: list[torch.Tensor], targets: list[dict], steps: int, lr: float) -> list[float]:
    """Train ``model`` on one fixed batch with Adam for ``steps`` steps; the total loss of every step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        losses = model(images, targets)
        total = losses["loc"] + losses["conf"]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(total.item())
    return history


def images_of_three_sizes() -> list[torch.Tensor]:
    """Three random images ``[3, H, W]`` in 0..1 of different sizes and aspect ratios (always the same)."""
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(3, h, w, generator=generator) for h, w in [(200, 250), (128, 128), (90, 160)]]
