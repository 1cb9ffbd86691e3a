"""The input-encoder contract, choosing an encoder by name, and reading token rows out.

An input encoder maps the batch's feature tensors to **rows** ``[N, out_dim]``:

* one row per example (``N = B``): ``tabular``, ``cnn``;
* or, for an encoder over a text feature (``position_feature`` set), ``L + 1`` rows per example
  (``N = B * (L + 1)``, examples contiguous): row 0 is the sentence vector, rows ``1..L`` the
  token vectors of the ``L`` token positions of ``features["seq:<position_feature>"]``.

Every architecture is position-wise between its input and its task heads (MLPs, experts, gates,
units mix each row independently), so it runs unchanged on token rows; the model's
:meth:`~polytask.models.base.MultiTaskModel.read_out` then gives row-level tasks the sentence row
(``[B, ...]``) and token-level tasks the token rows (``[B, L, ...]``). Per-task column families
that run their own sequence layers (``lstm``) produce rows in the same layout.

Encoders are registered in :data:`polytask.registry.ENCODERS`; each takes ``(spec, *,
embedding_dim, **own settings)``, the settings being the models' ``encoder_params``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.errors import ConfigError
from polytask.params import validate_params

if TYPE_CHECKING:
    from polytask.tasks import Task


class InputEncoder(nn.Module):
    """Base class of registered input encoders: ``features -> [N, out_dim]`` rows (see module doc)."""

    #: width of every row
    out_dim: int
    #: the text feature whose token positions give the rows (None: one row per example)
    position_feature: str | None = None

    def item_width(self, name: str) -> int | None:
        """The width of the embedding table this encoder holds for sequence feature ``name`` (one
        it does not read itself) through ``shared_with``, else None (the default). A model that
        embeds a sequence itself (DUPN's behaviour sequence) then reads the same vectors with
        :meth:`item_embeddings`, so a clicked item and the candidate item stay one vector."""
        return None

    def item_embeddings(self, name: str, ids: Tensor) -> Tensor:
        """``[*ids.shape, width]`` embeddings of sequence ids (0 = padding gives zeros) from the
        table :meth:`item_width` says this encoder holds for ``name``."""
        raise NotImplementedError(f"{type(self).__name__} holds no embedding table for {name!r}")


def make_input(
    spec: InputSpec,
    encoder: str = "tabular",
    *,
    embedding_dim: int = 4,
    params: Mapping[str, Any] | None = None,
) -> InputEncoder:
    """Build the registered input encoder ``encoder`` for ``spec``. ``params`` are its own
    keyword arguments (checked against its signature: an unknown key or a wrong type is a
    ConfigError naming ``model.encoder_params.<key>``); a spec the encoder cannot read is a
    ValueError saying why."""
    from polytask.registry import ENCODERS

    try:
        cls = ENCODERS.get(encoder)
    except KeyError:
        raise ConfigError(f"model.encoder: unknown encoder {encoder!r}; registered: {', '.join(ENCODERS.names())}") from None
    params = dict(params or {})
    own = [p for p in inspect.signature(cls).parameters if p not in ("spec", "embedding_dim", "self")]
    if params and not own:
        raise ConfigError(f"model.encoder_params: encoder {encoder!r} takes no encoder_params (got {', '.join(sorted(params))})")
    checked = validate_params(cls, params, where="model.encoder_params", skip=("spec", "embedding_dim"))
    return cls(spec, embedding_dim=embedding_dim, **checked)


class PerTaskInputs(nn.ModuleList):
    """One input encoder per task (for structures where tasks share no input parameters):
    ``features`` -> ``[T, N, out_dim]``. Indexable like the list of encoders it is.

    ``encoder``/``encoder_params`` choose the encoder as in :func:`make_input` (default: a
    ``tabular`` encoder per task)."""

    def __init__(
        self,
        spec: InputSpec,
        num_tasks: int,
        embedding_dim: int = 4,
        encoder: str = "tabular",
        encoder_params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            make_input(spec, encoder, embedding_dim=embedding_dim, params=encoder_params) for _ in range(num_tasks)
        )
        self.out_dim = self[0].out_dim
        self.position_feature = self[0].position_feature

    def __getitem__(self, idx):  # a slice is a plain list of encoders
        if isinstance(idx, slice):
            return nn.ModuleList(list(self._modules.values())[idx])
        return super().__getitem__(idx)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        return torch.stack([encoder(features) for encoder in self])


def check_task_levels(tasks: Sequence[Task], position_feature: str | None, encoder: str) -> None:
    """Token-level tasks need token rows of *their* text feature; ValueError saying which otherwise."""
    for t in tasks:
        if t.level != "token":
            continue
        if position_feature is None:
            raise ValueError(
                f"task {t.name!r} is a token-level task ({t.kind}) but encoder {encoder!r} gives one row per "
                "example; choose an encoder over its text feature (encoder: tokens)"
            )
        if t.spec.token_feature not in (None, position_feature):
            raise ValueError(
                f"task {t.name!r} labels the tokens of {t.spec.token_feature!r} but the encoder's token rows "
                f"follow {position_feature!r}"
            )


def read_out(
    outputs: dict[str, Tensor], tasks: Sequence[Task], features: Mapping[str, Tensor], position_feature: str | None
) -> dict[str, Tensor]:
    """Per-row outputs -> per-task outputs: unchanged without token rows; else ``[B, L, ...]`` for
    token-level tasks and the sentence row ``[B, ...]`` for the others."""
    if position_feature is None:
        return outputs
    b, length = features[f"seq:{position_feature}"].shape[:2]
    out = {}
    for t in tasks:
        y = outputs[t.name]
        y = y.reshape(b, length + 1, *y.shape[1:])
        out[t.name] = y[:, 1:] if t.level == "token" else y[:, 0]
    return out
