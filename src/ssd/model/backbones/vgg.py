"""The paper's VGG-16 base (dilated fc6/fc7, L2-normalised conv4_3) and the extra feature layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import conv_block, conv_extras, xavier_init

# conv1_1 .. conv4_3; "M" max-pool, "C" max-pool in ceil mode (pool3, so conv4_3 is 38x38 at 300)
VGG16_TO_CONV4_3: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512]


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned per-channel scale (ParseNet), used on conv4_3."""

    def __init__(self, channels: int, initial_scale: float = 20.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(initial_scale)))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) * self.weight.view(1, -1, 1, 1)


class VGG16Base(nn.Module):
    """VGG-16 up to conv7 plus extra layers; ``forward`` returns the source feature maps of the heads.

    Without batch norm and at ``width=1`` the layers of ``features`` have the indices of torchvision's
    ``vgg16().features[:23]`` and ``conv5_to_7`` holds pool4, conv5_x, pool5, conv6 and conv7 in order,
    so ImageNet and torchvision-SSD weights map onto it key by key (see ``ssd.interop``).
    """

    norm_layer = nn.BatchNorm2d

    def __init__(
        self,
        extras: Sequence[Sequence[int]],
        width: float = 1.0,
        batch_norm: bool = False,
        l2norm_scale: float = 20.0,
    ) -> None:
        super().__init__()

        def ch(n: int) -> int:
            return max(8, int(round(n * width)))

        layers: list[nn.Module] = []
        in_ch = 3
        for item in VGG16_TO_CONV4_3:
            if item in ("M", "C"):
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=item == "C"))
            else:
                layers += conv_block(in_ch, ch(int(item)), batch_norm, kernel_size=3, padding=1)
                in_ch = ch(int(item))
        self.features = nn.Sequential(*layers)  # conv1_1 .. relu4_3
        self.l2norm = L2Norm(in_ch, l2norm_scale)

        fc_ch = ch(1024)
        self.conv5_to_7 = nn.Sequential(
            nn.MaxPool2d(kernel_size=2, stride=2),  # pool4
            *conv_block(in_ch, ch(512), batch_norm, kernel_size=3, padding=1),  # conv5_1
            *conv_block(ch(512), ch(512), batch_norm, kernel_size=3, padding=1),  # conv5_2
            *conv_block(ch(512), ch(512), batch_norm, kernel_size=3, padding=1),  # conv5_3
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),  # pool5, keeps the 19x19 size
            *conv_block(ch(512), fc_ch, batch_norm, kernel_size=3, padding=6, dilation=6),  # conv6 (fc6, atrous)
            *conv_block(fc_ch, fc_ch, batch_norm, kernel_size=1),  # conv7 (fc7)
        )
        scaled_extras = [[ch(mid), ch(out), *layout] for mid, out, *layout in extras]
        self.extras = conv_extras(fc_ch, scaled_extras, batch_norm)
        self.out_channels = [in_ch, fc_ch] + [e[1] for e in scaled_extras]
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        xavier_init(self.conv5_to_7)
        xavier_init(self.extras)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.features(x)
        sources = [self.l2norm(x)]  # conv4_3, L2-normalised
        x = self.conv5_to_7(x)
        sources.append(x)  # conv7
        for block in self.extras:
            x = block(x)
            sources.append(x)  # conv8_2, conv9_2, ...
        return sources
