"""A tiny SSD for the inference and export tests: narrow, 128-pixel inputs, fast on a CPU."""

import torch

import ssd

CLASS_NAMES = ["__background__", "cat", "dog", "bird"]
# 5 source maps (16, 8, 4, 2, 1), 1524 default boxes, batch norm
TINY = dict(
    width=0.125,
    batch_norm=True,
    input_size=128,
    extras=[[256, 512, 3, 2, 1], [128, 256, 3, 2, 1], [128, 256, 3, 2, 1]],
    aspect_ratios=[[2], [2, 3], [2, 3], [2], [2]],
    min_sizes=[12, 28, 50, 80, 105],
    max_sizes=[28, 50, 80, 105, 135],
    steps=None,
    class_names=CLASS_NAMES,
)


def tiny_model_with_spread_scores() -> ssd.SSD:
    """The tiny SSD (4 classes, eval mode) with a scaled-down class head: logits of std ~1, so scores spread over
    0..1 without float ties and every image gets its full 200 detections."""
    torch.manual_seed(0)
    model = ssd.build_model("ssd300_vgg16", 4, **TINY).eval()
    with torch.no_grad():
        for layer in model.net.head.conf:
            layer.weight.mul_(0.3)
    return model
