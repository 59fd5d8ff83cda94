"""`dataset=synthetic`: generated, deterministic, learnable, tiny (class templates plus noise); for tests and demos.

    deeprob train dataset=synthetic dataset.num_train=2048 dataset.image_size=32
"""
from typing import Annotated

import torch

from .. import UserError
from ..data import Dataset, Root, SplitSeed, Split, Subset, ValSize, check_image_size
from ..validate import Choice, Range


class Synthetic(Dataset):
    """conf/dataset/synthetic.yaml: its parameters, declared once."""

    def __init__(self, root: Root = None, download: bool = False,
                 num_classes: Annotated[int, Range(2, 10_000, integer=True)] = 4,
                 num_train: Annotated[int, Range(1, integer=True)] = 1024,
                 num_test: Annotated[int, Range(0, integer=True, what="an integer (0 = no test split)")] = 128,
                 image_size: Annotated[int, Range(1, 1024, integer=True)] = 16,
                 channels: Annotated[int, Choice(1, 3, what="1 (grayscale) or 3 (RGB)")] = 3,
                 noise: Annotated[float, Range(0, 1000, what="a finite number")] = 50.0,  # uint8 grey levels
                 seed: Annotated[int, Range(0, 2**63 - 1, integer=True)] = 0,
                 subset: Subset = None, val_size: ValSize = 256, split_seed: SplitSeed = 0):
        super().__init__(subset, val_size, split_seed)
        self.root, self.download = root, download  # (unused: every kind has the keys)
        self.num_classes, self.num_train, self.num_test = num_classes, num_train, num_test
        self.image_size, self.channels, self.noise, self.seed = image_size, channels, noise, seed

    def check(self, min_side: int = 1, needed_by: str = ""):
        """The memory it would take and its image size, known before generating anything."""
        size = (self.num_train + self.num_test) * self.channels * self.image_size**2  # bytes, as uint8
        if size > 2**33:  # generated in float32 first: 4× that, briefly
            raise UserError(f"dataset: {self.num_train + self.num_test:,} synthetic images of {self.channels}×"
                            f"{self.image_size}×{self.image_size} would take {size / 2**30:.0f} GiB; lower "
                            f"dataset.num_train, dataset.num_test or dataset.image_size")
        check_image_size((self.channels, self.image_size, self.image_size), min_side, needed_by,
                         fix="raise dataset.image_size")

    def read(self):
        return make_synthetic(self)


def make_synthetic(cfg):
    """Each class is a smooth random template; an image is its template plus Gaussian pixel noise."""
    g = torch.Generator().manual_seed(cfg.seed)
    size, channels = cfg.image_size, cfg.channels
    coarse = torch.rand(cfg.num_classes, channels, 4, 4, generator=g) * 175 + 40
    templates = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def draw(n):
        labels = torch.randint(0, cfg.num_classes, (n,), generator=g)
        noise = torch.randn(n, channels, size, size, generator=g) * cfg.noise
        return Split((templates[labels] + noise).round().clamp(0, 255).to(torch.uint8), labels)

    train, test = draw(cfg.num_train), draw(cfg.num_test) if cfg.num_test else None
    return train, test, [f"class{i}" for i in range(cfg.num_classes)]
