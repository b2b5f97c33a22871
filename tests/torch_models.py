"""Small PyTorch models for the torch-source tests, built in code (nothing downloaded).

torchvision 0.28.0 does not import beside torch 2.13.0 here ("operator torchvision::nms does
not exist"), so MobileNetV3-small and ResNet-18 are written out below with torchvision's
architectures (`weights=None`: random init), sized by `num_classes`.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TwoInputs(nn.Module):
    """An image and a feature vector: a conv branch and a linear branch, summed into 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.image_head = nn.Linear(8, 10)
        self.features = nn.Linear(5, 10)

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(image))).mean((2, 3))
        return self.image_head(x) + self.features(features)


class SmallCNN(nn.Module):
    """3x32x32 -> 10 logits: conv, depthwise conv, pooling, linear."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 16, 3, padding=1)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.head = nn.Linear(16, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(image))
        x = F.max_pool2d(F.relu(self.depthwise(x)), 2)
        return self.head(x.mean((2, 3)))


# --- MobileNetV3-small (torchvision.models.mobilenet_v3_small) ---------------------------


def _divisible(value: float, divisor: int = 8) -> int:
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class _ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout, eps=0.001, momentum=0.01)]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = F.hardsigmoid(self.fc2(F.relu(self.fc1(scale))))
        return x * scale


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, hs: bool, stride: int):
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        self.residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(_ConvBN(cin, expanded, 1, act=act))
        layers.append(_ConvBN(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if se:
            layers.append(_SqueezeExcite(expanded, _divisible(expanded // 4)))
        layers.append(_ConvBN(expanded, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


# (input, kernel, expanded, output, squeeze-excite, hard-swish, stride): torchvision's "small" table.
_MOBILENET_V3_SMALL = [
    (16, 3, 16, 16, True, False, 2), (16, 3, 72, 24, False, False, 2), (24, 3, 88, 24, False, False, 1),
    (24, 5, 96, 40, True, True, 2), (40, 5, 240, 40, True, True, 1), (40, 5, 240, 40, True, True, 1),
    (40, 5, 120, 48, True, True, 1), (48, 5, 144, 48, True, True, 1), (48, 5, 288, 96, True, True, 2),
    (96, 5, 576, 96, True, True, 1), (96, 5, 576, 96, True, True, 1),
]


class MobileNetV3Small(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_ConvBN(3, 16, 3, 2, act=nn.Hardswish)]
        layers += [_InvertedResidual(*row) for row in _MOBILENET_V3_SMALL]
        layers.append(_ConvBN(96, 576, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(inplace=True), nn.Dropout(0.2),
                                        nn.Linear(1024, num_classes))
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)


# --- ResNet-18 (torchvision.models.resnet18) ---------------------------------------------


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        stages, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)))
            cin = cout
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(512, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = F.adaptive_avg_pool2d(self.layers(x), 1).flatten(1)
        return self.fc(x)


def _init(model: nn.Module) -> None:
    """torchvision's initialisation: Kaiming-normal convs, BatchNorm at (1, 0), small linears."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


# --- digits at 32x32 -----------------------------------------------------------------------


def digits_32(seed: int = 0):
    """scikit-learn's digits as (N, 3, 32, 32) float32 in [0, 1] (grey repeated on 3 channels), split
    into train and test halves with labels."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    order = np.random.default_rng(seed).permutation(len(images))
    images, labels = images.numpy()[order], digits.target[order].astype(np.int64)
    half = len(images) // 2
    return (images[:half], labels[:half]), (images[half:], labels[half:])


def train_briefly(model: nn.Module, images, labels, epochs: int = 3, seed: int = 0) -> nn.Module:
    """A few epochs of Adam on the digits, then eval mode (BatchNorm statistics are the trained ones)."""
    torch.manual_seed(seed)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(32):
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    # Re-estimate BatchNorm statistics with the final weights (momentum None: a plain average).
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        for batch in torch.arange(len(x)).split(64):
            model(x[batch])
    return model.eval()


def accuracy(logits, labels) -> float:
    import numpy as np

    return float((np.asarray(logits).argmax(-1) == np.asarray(labels)).mean())
