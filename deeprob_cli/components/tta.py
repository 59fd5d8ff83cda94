"""Test-time augmentation (conf/tta/): several views of each evaluation image, softmax averaged over them.

Every option is a callable `tta(x) -> list of batches`, each of the input's shape (N,C,H,W), on a float
batch in [0, 1]; deeprob_cli.evaluate.evaluate() averages the model's softmax over the views.
Try: deeprob train dataset=synthetic tta=multicrop   or   deeprob eval RUN_DIR tta=flip
"""
import torch.nn.functional as F


class Identity:
    """One view: the image itself."""

    def __call__(self, x):
        return [x]


class Flip:
    """Two views: the image and its mirror image."""

    def __call__(self, x):
        return [x, x.flip(3)]


class MultiCrop:
    """The lecture's fixed 10 views (AlexNet, ResNet): 4 corner crops and the centre crop, each with its mirror.
    A crop's side is `size` × the image's; `fill` brings it back to the image's size: reflect = pad around it
    (the same shifted-image statistics that augment=crop trains on), resize = bilinear upscaling."""

    def __init__(self, size: float = 0.875, fill: str = "reflect"):
        if not (isinstance(size, (int, float)) and 0 < size <= 1):
            raise ValueError(f"tta.size: {size!r} is not allowed; expected a fraction in (0, 1]")
        if fill not in ("reflect", "resize"):
            raise ValueError(f"tta.fill: {fill!r} is not one of reflect, resize")
        self.size, self.fill = size, fill

    def crops(self, x):
        """The 4 corner crops and the centre crop, in that order: top-left, top-right, bottom-left, bottom-right."""
        h, w = x.shape[-2:]
        ch, cw = max(1, round(self.size * h)), max(1, round(self.size * w))
        top, left = (h - ch) // 2, (w - cw) // 2
        corners = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), (top, left)]
        return [x[..., i:i + ch, j:j + cw] for i, j in corners]

    def restore(self, crop, h, w):
        """A crop brought back to h×w."""
        ch, cw = crop.shape[-2:]
        if self.fill == "resize":
            return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
        top, left = (h - ch) // 2, (w - cw) // 2
        mode = "reflect" if max(h - ch, w - cw) < min(ch, cw) else "replicate"  # reflect needs pad < size
        return F.pad(crop, (left, w - cw - left, top, h - ch - top), mode=mode)

    def __call__(self, x):
        h, w = x.shape[-2:]
        views = [self.restore(c, h, w) for c in self.crops(x)]
        return views + [v.flip(3) for v in views]
