"""Every member of the family learns: a short overfit per backbone, on small inputs so that it takes seconds.

The presets keep their backbone, head and extra-layer style; only the input size (and, for ResNet-50, whose
extra layers need 300 px, the number of extra layers) is reduced, with default boxes sized for 96 px.
"""

import pytest
import torch

import ssd
from model_helpers import overfit

SIX_MAPS_AT_96 = dict(
    input_size=96, scales=None, steps=None, min_sizes=[16, 32, 48, 64, 80, 96], max_sizes=[32, 48, 64, 80, 96, 112]
)
SMALL = {
    "ssdlite320_mobilenet_v3_large": SIX_MAPS_AT_96,
    "ssdlite320_mobilenet_v2": SIX_MAPS_AT_96,
    "ssd300_resnet50": dict(
        input_size=96,
        extras=[[256, 512, 3, 2, 1], [256, 512, 3, 2, 1], [128, 256, 3, 2, 1]],  # maps 12, 6, 3, 2
        aspect_ratios=[[2], [2, 3], [2, 3], [2]],
        min_sizes=[16, 32, 56, 80],
        max_sizes=[32, 56, 80, 104],
        steps=None,
    ),
}
IMAGES_SEED = 0
TARGETS = [
    {"boxes": torch.tensor([[10.0, 15.0, 60.0, 70.0], [70.0, 10.0, 120.0, 45.0]]), "labels": torch.tensor([1, 2])},
    {"boxes": torch.tensor([[20.0, 20.0, 100.0, 90.0]]), "labels": torch.tensor([2])},
]


@pytest.mark.parametrize("preset", sorted(SMALL))
def test_short_overfit_drives_the_multibox_loss_down(preset):
    torch.manual_seed(0)
    model = ssd.build_model(preset, 3, **SMALL[preset]).train()
    generator = torch.Generator().manual_seed(IMAGES_SEED)
    images = [torch.rand(3, 96, 128, generator=generator) for _ in range(2)]
    totals = overfit(model, images, TARGETS, steps=20, lr=3e-3)
    assert totals[0] > 5.0  # softmax over 3 classes on ~1,000 boxes with 3:1 mining starts well above 1
    assert totals[-1] < 1.0 and totals[-1] < totals[0] / 8
