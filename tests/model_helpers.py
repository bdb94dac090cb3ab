"""A tiny SSD for the inference and export tests: narrow, 128-pixel inputs, fast on a CPU."""

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
