"""A small multilayer perceptron: a vector of numbers in, class logits out."""

from torch import nn

NORMS = ("batch", "layer")  # batch: BatchNorm1d; layer: LayerNorm (no batch statistics)


class {{ cookiecutter.__model_class }}(nn.Module):
    """Two hidden layers of `width` units, each Linear -> norm -> ReLU, then a linear head."""

    def __init__(self, in_features: int, num_classes: int, width: int = 32, norm: str = "batch"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm {norm!r} is not one of {', '.join(NORMS)}")
        if min(in_features, num_classes, width) < 1:
            raise ValueError("in_features, num_classes and width must be 1 or more")
        layers: list[nn.Module] = []
        for size_in in (in_features, width):
            normalise = nn.BatchNorm1d(width) if norm == "batch" else nn.LayerNorm(width)
            layers += [nn.Linear(size_in, width, bias=False), normalise, nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, vectors):
        return self.head(self.body(vectors))
