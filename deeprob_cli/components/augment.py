"""Data augmentation (conf/augment/, multi-select): batched tensor ops with a random draw per example.

Each option is a callable `aug(x, generator)` on a float batch (N,C,H,W) in [0, 1] on the training device.
torchvision.transforms.v2 draws ONE set of random parameters for a whole batch tensor, so the cheap, hot
ops are written here as batched code. Try: deeprob train dataset=synthetic augment=[flip,crop]
"""
import torch
import torch.nn.functional as F


class Flip:
    """Mirror each image left-right with probability p."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, x, generator=None):
        flip = torch.rand(len(x), generator=generator, device=generator.device if generator else x.device) < self.p
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


class Crop:
    """Pad by `padding` pixels (reflect or zero), then take a crop of the original size at a random offset."""

    def __init__(self, padding: int = 4, mode: str = "reflect"):
        if mode not in ("reflect", "zero"):
            raise ValueError(f"augment.crop.mode: {mode!r} is not one of reflect, zero")
        self.padding, self.mode = padding, mode

    def __call__(self, x, generator=None):
        pad = self.padding
        if pad == 0:
            return x
        n, c, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect" if self.mode == "reflect" else "constant")
        device = generator.device if generator else x.device
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device).to(x.device)
        # gather rows then columns with per-example offsets: index = offset + arange(size)
        rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
        out = padded.gather(2, rows)
        cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
        return out.gather(3, cols)


def compose(augments):
    """Apply the selected augmentations in order; an empty selection is the identity."""
    augments = list(augments)

    def apply(x, generator=None):
        for aug in augments:
            x = aug(x, generator)
        return x

    return apply
