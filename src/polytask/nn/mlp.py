"""A plain multi-layer perceptron."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU, "sigmoid": nn.Sigmoid}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None


def check_widths(hidden: Sequence[int], what: str = "hidden layer widths") -> None:
    """Layer widths must be positive integers: torch would build a zero-width layer silently (or
    fail on a negative one deep inside); ValueError naming them instead."""
    bad = [h for h in hidden if not isinstance(h, int) or h < 1]
    if bad:
        raise ValueError(f"{what} must be >= 1, got {list(hidden)}")


class MLP(nn.Sequential):
    """Linear -> activation (-> dropout) for each hidden size. ``out_dim`` is the last width
    (the input width if ``hidden`` is empty, in which case the MLP is the identity)."""

    def __init__(self, in_dim: int, hidden: Sequence[int], *, act: str = "relu", dropout: float = 0.0) -> None:
        check_widths(hidden)
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), activation(act)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        super().__init__(*layers)
        self.out_dim = width

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102 (nn.Sequential's forward, typed)
        return super().forward(x)
