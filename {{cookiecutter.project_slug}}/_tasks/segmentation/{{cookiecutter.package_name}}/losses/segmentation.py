"""The segmentation loss: per-pixel cross-entropy, soft Dice, or both, with an ignore value."""

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

LOSS_KINDS = ("ce", "dice", "ce+dice")


class SegmentationLoss(nn.Module):
    """The loss of (N, C, H, W) logits against (N, H, W) class indices.

    "ce": cross-entropy averaged over the counted pixels (weighted by `class_weights` when given,
    as torch's weighted cross-entropy does); "dice": 1 - the mean soft Dice score of the classes
    present; "ce+dice": their sum. Pixels whose target is `ignore_index` give no loss and no
    gradient. The outputs may be a dict {"out": logits, "aux": logits} (torchvision models with
    an auxiliary head, in training): the aux logits add their loss times `aux_weight`.
    """

    def __init__(
        self,
        kind: str = "ce",
        ignore_index: int = 255,
        class_weights: torch.Tensor | None = None,
        aux_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in LOSS_KINDS:
            raise ValueError(f"kind must be one of {', '.join(LOSS_KINDS)}, got {kind!r}")
        if aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {aux_weight}")
        self.kind, self.ignore_index, self.aux_weight = kind, ignore_index, aux_weight
        # A buffer moves with .to(device); not persistent: the checkpoint keeps the weights
        # once, beside the run's other settings, not in every state dict.
        weights = None if class_weights is None else torch.as_tensor(class_weights).float()
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(
        self, outputs: torch.Tensor | Mapping[str, torch.Tensor], targets: torch.Tensor
    ) -> torch.Tensor:
        if not isinstance(outputs, Mapping):
            return self.pixel_loss(outputs, targets)
        loss = self.pixel_loss(outputs["out"], targets)
        if self.aux_weight and "aux" in outputs:
            loss = loss + self.aux_weight * self.pixel_loss(outputs["aux"], targets)
        return loss

    def pixel_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The chosen loss of one set of logits."""
        # float32 whatever autocast computed the logits in: sums over millions of pixels and
        # the ratios of Dice lose too many digits in 16-bit floats.
        logits = logits.float()
        if self.kind == "ce":
            return self.cross_entropy(logits, targets)
        if self.kind == "dice":
            return self.dice(logits, targets)
        return self.cross_entropy(logits, targets) + self.dice(logits, targets)

    def cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy averaged over the counted pixels (weighted: sum(w * loss) / sum(w)).

        What torch's mean reduction computes, but a batch whose pixels are all ignored (a
        random crop of padding can be) gives 0 where torch gives 0 / 0 = NaN.
        """
        counted = targets != self.ignore_index
        per_pixel = F.cross_entropy(
            logits, targets, weight=self.class_weights, ignore_index=self.ignore_index,
            reduction="none",
        )  # fmt: skip
        if self.class_weights is None:
            total = counted.sum()
        else:
            total = (self.class_weights[targets.where(counted, 0)] * counted).sum()
        # Divide by 1 when nothing counts (the sum is 0 then): no NaN, no host-device sync.
        return per_pixel.sum() / torch.where(total > 0, total, 1)

    def dice(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """1 - the mean soft Dice score over the classes present in the targets or in the
        predictions (argmax) of the counted pixels; the whole batch counts as one image.

        A class present nowhere would score 0 / 0: left out, as mIoU leaves it out.
        """
        counted = (targets != self.ignore_index).unsqueeze(1)  # (N, 1, H, W)
        probabilities = logits.softmax(dim=1) * counted
        # One-hot (N, C, H, W) maps of the true and the predicted classes, 0 at ignored pixels,
        # written by scatter in float32: deterministic, and no host-device sync.
        weights = counted.to(probabilities.dtype)
        classes = targets.unsqueeze(1).where(counted, 0)
        truth = torch.zeros_like(probabilities).scatter_(1, classes, weights)
        # max(...).indices, not argmax: the same classes, many times faster across channels on CPU.
        predicted_classes = logits.max(dim=1, keepdim=True).indices
        predicted = torch.zeros_like(probabilities).scatter_(1, predicted_classes, weights)
        true_pixels = per_class(truth)
        overlap = per_class(probabilities * truth)
        sizes = per_class(probabilities) + true_pixels
        present = (true_pixels + per_class(predicted)) > 0
        scores = 2 * overlap / torch.where(present, sizes, 1)
        count = present.sum()  # 0 only when every pixel is ignored: then the loss is 0
        mean_score = (scores * present).sum() / count.clamp_min(1)
        return (1 - mean_score) * (count > 0)

    def extra_repr(self) -> str:
        weighted = self.class_weights is not None
        return (
            f"kind={self.kind!r}, ignore_index={self.ignore_index}, "
            f"class_weights={'set' if weighted else None}, aux_weight={self.aux_weight}"
        )


def per_class(maps: torch.Tensor) -> torch.Tensor:
    """The sums of (N, C, H, W) maps per class, (C,): over H and W first, which is several
    times faster than one sum over (0, 2, 3) on CPU."""
    return maps.sum(dim=(2, 3)).sum(dim=0)


def inverse_frequency_weights(pixel_counts: torch.Tensor) -> torch.Tensor:
    """Class weights from the training masks' pixel counts per class (C,): each class weighs in
    inversely to its frequency, so every class seen adds the same total to the loss.

    Scaled so that the average weight of a training pixel is 1 (w_c = pixels / (classes seen *
    pixels of c), scikit-learn's "balanced" rule): the weights read as "this class's pixels
    count w times as much as an average pixel". A class with no training pixel gets weight 0:
    no training target is ever of that class, and a finite number keeps the rest well scaled.
    """
    counts = pixel_counts.double()
    seen = counts > 0
    if not seen.any():
        raise ValueError("the pixel counts hold no pixel of any class")
    weights = counts.sum() / (seen.sum() * torch.where(seen, counts, 1))
    return (weights * seen).float()
