"""ResNet-50 as NVIDIA's SSD300 v1.1 cuts it: conv1 to layer3, layer3 at stride 1 (38x38 at 300 px)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn
from torchvision.models import resnet50

from .blocks import conv_extras, load_classifier, xavier_init


def trunk_to_layer3(classifier: nn.Module) -> nn.Sequential:
    """conv1 .. layer3 of a torchvision ResNet, the first block of layer3 set to stride 1 (an 8x smaller map)."""
    first = classifier.layer3[0]
    first.conv1.stride = (1, 1)
    first.conv2.stride = (1, 1)
    first.downsample[0].stride = (1, 1)
    c = classifier
    return nn.Sequential(c.conv1, c.bn1, c.relu, c.maxpool, c.layer1, c.layer2, c.layer3)


class ResNet50Backbone(nn.Module):
    """ResNet-50 to layer3 (1,024 channels) and extra layers with batch norm; ``forward`` returns the maps."""

    norm_layer = nn.BatchNorm2d

    def __init__(self, extras: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.features = trunk_to_layer3(resnet50())
        self.extras = conv_extras(1024, extras, batch_norm=True)
        self.out_channels = [1024] + [int(e[1]) for e in extras]
        xavier_init(self.extras)

    def load_imagenet(self, state: Mapping[str, Tensor]) -> int:
        """Copy torchvision's ImageNet ``resnet50`` weights into the trunk; the number of tensors."""
        part = trunk_to_layer3(load_classifier(resnet50(), state, "resnet50")).state_dict()
        self.features.load_state_dict(part)
        return len(part)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.features(x)
        sources = [x]
        for block in self.extras:
            x = block(x)
            sources.append(x)
        return sources
