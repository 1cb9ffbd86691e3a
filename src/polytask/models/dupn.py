"""DUPN: Deep User Perception Network (Ni, Ou, Liu, Li, Ou, Zeng, Pan, Li. "Perceive Your Users
in Depth: Learning Universal User Representations from Multiple E-commerce Tasks", KDD 2018).

From the paper's abstract: a user's behaviour sequence goes through an LSTM and an attention
layer; the resulting user representation is shared by all tasks and learned end-to-end, and is
reusable for new tasks. The details below follow ``shared/reference/methods.md`` A11 (recalled,
not checked against the paper) where stated, else are this implementation's choices.

**Behaviour sequence.** One step per history event, read from aligned ``seq:<name>`` features
(``sequences``; default: every sequence feature in declaration order, except the one named by
``encoder_params.feature`` (the context encoder's own text); the first is the item
sequence, the others are the step's properties: behaviour type, time bucket, ...). They must have
the same length, left-aligned and 0-padded as :class:`~polytask.data.encoders.SequenceEncoder`
produces them; a step is valid where the item id is not 0 (padding). Every sequence has its own
embedding table (``embedding_dim``). ``combine="concat"`` (default; the reference's
``[e_i; p_i]``) concatenates the step's embeddings, ``"sum"`` adds them.

**Recurrent layer** (``cell``):

* ``"lstm"`` (default): ``torch.nn.LSTM`` over the combined step embeddings. The valid steps are a
  prefix (left-aligned histories) and the LSTM is causal, so an output at a valid step never reads
  padding: it runs over the batch's longest history without packing, and outputs at padded steps
  are zeroed (and masked out of the attention);
* ``"property_gated"``: the reference's property-gated LSTM: the item embedding is the input, the
  property embeddings (combined as above) enter only the input, forget and output gates
  (``i, f, o = sigmoid(W x_t + U h_{t-1} + V p_t + b)``, ``g = tanh(W_g x_t + U_g h_{t-1} + b_g)``),
  so behaviour type and time decide how much of a step is remembered. A Python loop over the
  steps (slower); padded steps leave the state unchanged.

**Context.** Every feature outside the behaviour sequence (numeric values, categorical
embeddings, dense features, other sequence features) goes through the model's input encoder
(``encoder``/``encoder_params``, see :mod:`polytask.encoders`; default ``tabular``, which
mean-pools the other sequences). In a recommendation table that is the candidate item and the
request's context. A ``cnn`` encoder reads an image among them (e.g. the item's picture). A
``tokens`` encoder reads a text among them (e.g. the search query): name it in
``encoder_params.feature`` and it is left out of the default behaviour sequence; its sentence row
is the attention query and the towers read every row, so a token-level task (tagging the query)
gets per-token outputs that see the user representation.

**Attention pooling** (additive, Bahdanau-style): ``score_t = v^T tanh(W_h h_t + W_q q + b)``,
``a = masked softmax over the valid steps``, ``user = sum_t a_t h_t``. The query ``q`` is the
context encoding (its sentence row with a text encoder), so the representation depends on the
candidate as the reference's query-dependent attention does. (The reference's score also reads
the step's property; here the properties reach the score through ``h_t`` only.) Without context
features ``W_q q`` is absent. A sequence of length 0 gives the zero vector as the user
representation (and zero attention weights), finite and without NaN gradients.

**Tasks.** Every task's tower (``tower_hidden``) reads ``[user; context]``: the shared user
representation and the context/candidate encoding (the user vector repeated on every row of its
example when the context encoder gives token rows). :meth:`shared_modules` = context encoder, step
embeddings, recurrent layer, attention: the parts a transfer to a new task reuses
(``train.init_from`` + ``train.freeze: shared``, see :mod:`polytask.transfer`). Without any
sequence feature the model is the shared context encoder under per-task towers.

:attr:`DUPN.last_attention` holds the attention weights ``[B, L]`` of the last forward pass (0 on
padding); :meth:`diagnostics` their statistics over the last evaluation pass (:class:`AttentionRecord`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.encoders.base import check_task_levels
from polytask.errors import ConfigError
from polytask.models.base import MultiTaskModel
from polytask.nn import TaskHeads
from polytask.nn.capture import capturing
from polytask.nn.sequence import steps_to_run
from polytask.registry import MODELS
from polytask.tasks import Task


class AttentionPooling(nn.Module):
    """``score_t = v^T tanh(W_h h_t + W_q q + b)``; masked softmax over the valid steps; weighted sum.

    ``forward(h [B, L, H], mask [B, L] bool, q [B, Q] | None) -> (pooled [B, H], weights [B, L])``.
    Padding gets weight exactly 0; a row without any valid step gets all-zero weights and a zero
    vector (finite values and gradients, no NaN from a softmax over nothing).
    """

    def __init__(self, hidden_size: int, query_size: int, attention_dim: int) -> None:
        super().__init__()
        self.w_h = nn.Linear(hidden_size, attention_dim)  # its bias is b
        self.w_q = nn.Linear(query_size, attention_dim, bias=False) if query_size else None
        self.v = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, h: Tensor, mask: Tensor, q: Tensor | None = None) -> tuple[Tensor, Tensor]:
        s = self.w_h(h)
        if self.w_q is not None and q is not None:
            s = s + self.w_q(q).unsqueeze(1)
        scores = self.v(torch.tanh(s)).squeeze(-1)  # [B, L]
        # a finite fill (not -inf): a row with no valid step then gives a finite uniform softmax,
        # zeroed by the mask below
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1) * mask.to(scores.dtype)
        pooled = torch.bmm(weights.unsqueeze(1).to(h.dtype), h).squeeze(1)
        return pooled, weights


class PropertyGatedLSTM(nn.Module):
    """LSTM whose input, forget and output gates also read a per-step property vector ``p_t``
    (the cell candidate does not). ``forward(x [B, L, I], p [B, L, P] | None, mask [B, L]) ->
    [B, L, H]`` (zero at padded steps; a padded step leaves the state unchanged)."""

    def __init__(self, input_size: int, property_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.x2h = nn.Linear(input_size, 4 * hidden_size)  # gates i, f, g, o
        self.h2h = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.p2h = nn.Linear(property_size, 3 * hidden_size, bias=False) if property_size else None  # i, f, o

    def forward(self, x: Tensor, p: Tensor | None, mask: Tensor) -> Tensor:
        b, length, _ = x.shape
        hsz = self.hidden_size
        steps = steps_to_run(mask.sum(1), length)
        gx = self.x2h(x[:, :steps])  # [B, S, 4H]
        if self.p2h is not None and p is not None:
            gi, gf, go = self.p2h(p[:, :steps]).split(hsz, dim=-1)
            gx = gx + torch.cat([gi, gf, torch.zeros_like(gi), go], dim=-1)
        h = x.new_zeros(b, hsz)
        c = x.new_zeros(b, hsz)
        outs = []
        for t in range(steps):
            i, f, g, o = (gx[:, t] + self.h2h(h)).split(hsz, dim=-1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            m = mask[:, t].unsqueeze(1)
            c, h = torch.where(m, c_new, c), torch.where(m, h_new, h)
            outs.append(h_new * m.to(h_new.dtype))
        out = torch.stack(outs, dim=1) if outs else x.new_zeros(b, 0, hsz)
        if steps < length:
            out = torch.cat([out, x.new_zeros(b, length - steps, hsz)], dim=1)
        return out


class AttentionRecord(nn.Module):
    """What :meth:`DUPN.diagnostics` reads of the attention: the last batch's weights and lengths,
    and while the model is in eval mode the sums its statistics average over every row since the
    mode was set (each ``model.eval()``, every evaluation pass, starts anew), so the logged
    attention describes the whole validation split rather than its last batch. Nothing is
    recorded while the model is traced or exported."""

    def __init__(self) -> None:
        super().__init__()
        self.last: tuple[Tensor, Tensor] | None = None
        self._sums: Tensor | None = None

    def train(self, mode: bool = True) -> AttentionRecord:
        self._sums = None
        return super().train(mode)

    def update(self, weights: Tensor, lengths: Tensor) -> None:
        if capturing():
            return
        self.last = (weights.detach(), lengths.detach())
        if not self.training:
            sums = self._batch_sums(*self.last)
            self._sums = sums if self._sums is None else self._sums + sums

    @staticmethod
    def _batch_sums(weights: Tensor, lengths: Tensor) -> Tensor:
        """Rows, rows with a history, rows with >= 2 steps, and the sums of entropy, normalised
        entropy, largest weight (rows with a history) and length, as one float64 tensor."""
        w = weights.double()
        has, multi = lengths > 0, lengths > 1
        entropy = torch.special.entr(w).sum(1)
        normalized = torch.where(multi, entropy / torch.log(lengths.double().clamp_min(2)), torch.zeros_like(entropy))
        largest = w.amax(1) if w.shape[1] else torch.zeros_like(entropy)
        counts = torch.stack([torch.ones_like(entropy).sum(), has.double().sum(), multi.double().sum()])
        return torch.cat([counts, torch.stack([(entropy * has).sum(), normalized.sum(), (largest * has).sum(),
                                               lengths.double().sum()])])

    def summary(self) -> dict[str, Any]:
        """``{"attention": {entropy, normalized_entropy, max_weight, mean_length, empty_share}}``
        (see :meth:`DUPN.diagnostics`); ``{}`` before any forward pass."""
        sums = self._sums if self._sums is not None else (self._batch_sums(*self.last) if self.last is not None else None)
        if sums is None:
            return {}
        rows, has, multi, entropy, normalized, largest, length = sums.tolist()
        if not has:
            return {"attention": {"empty_share": 1.0}}
        return {
            "attention": {
                "entropy": entropy / has,
                "normalized_entropy": normalized / multi if multi else math.nan,
                "max_weight": largest / has,
                "mean_length": length / rows,
                "empty_share": (rows - has) / rows,
            }
        }


@MODELS.register("dupn")
class DUPN(MultiTaskModel):
    """Deep User Perception Network (Ni et al., KDD 2018): behaviour-sequence LSTM + query
    attention -> one user representation shared by every task's tower (see the module docstring).

    Args:
        sequences: the ``seq:`` features forming the behaviour sequence, aligned step by step; the
            first is the item sequence (its padding marks the invalid steps). Default: all.
        embedding_dim: width of every embedding (steps and context).
        combine: how a step's embeddings are joined: ``concat`` or ``sum``.
        cell: ``lstm`` or ``property_gated`` (properties enter the gates only).
        hidden_size: LSTM state width = width of the user representation.
        attention_dim: width of the attention's hidden layer.
        tower_hidden: each task's tower over ``[user; context]``.
        encoder, encoder_params: the context encoder (see the module docstring).
        dropout: on ``[user; context]`` and in the towers.
    """

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        sequences: list[str] | None = None,
        embedding_dim: int = 16,
        combine: Literal["concat", "sum"] = "concat",
        cell: Literal["lstm", "property_gated"] = "lstm",
        hidden_size: int = 32,
        attention_dim: int = 32,
        tower_hidden: list[int] = [32],  # noqa: B006 - read-only default
        encoder: str = "tabular",
        encoder_params: dict[str, Any] = {},  # noqa: B006 - read-only default
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(input_spec, tasks)
        sizes = {"embedding_dim": embedding_dim, "hidden_size": hidden_size, "attention_dim": attention_dim}
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        available = list(input_spec.sequences)
        if sequences is None:  # the context encoder's own text (encoder_params.feature) is context
            sequences = [s for s in available if s != encoder_params.get("feature")]
        else:
            sequences = list(sequences)
            unknown = [s for s in sequences if s not in available]
            if unknown:
                raise ValueError(f"sequences: {unknown} are not sequence features of the input (have: {available})")
            if len(set(sequences)) != len(sequences) or not sequences:
                raise ValueError(f"sequences must name distinct sequence features, got {sequences}")
        self.sequence_names = sequences
        self.combine, self.cell, self.hidden_size = combine, cell, hidden_size

        # context: every feature outside the behaviour sequence (the attention query, and head input)
        ctx = replace(input_spec, sequences={k: v for k, v in input_spec.sequences.items() if k not in sequences})
        has_context = bool(ctx.numeric_dim or ctx.cardinalities or ctx.sequences or ctx.dense)
        self.context: nn.Module | None = None
        if has_context:
            try:
                self.context = self.build_input(encoder, encoder_params, embedding_dim=embedding_dim, spec=ctx)
            except ConfigError:
                raise
            except ValueError as exc:  # the encoder cannot read the context: say which features those are
                raise ValueError(f"dupn: the context (features outside the behaviour sequences {sequences}): {exc}") from None
        elif encoder != "tabular" or encoder_params:
            raise ValueError(f"dupn: encoder {encoder!r} has no context features to read: every feature is in the "
                             f"behaviour sequences {sequences}")
        else:
            check_task_levels(self.tasks, None, encoder)
        context_dim = self.context.out_dim if self.context is not None else 0
        if not sequences and self.context is None:
            raise ValueError("the model has no input features")

        # a list, not a ModuleDict keyed by feature name: a column may be called "items" or "a.b".
        # A sequence sharing a context feature's vocabulary (shared_with: the candidate item) reads
        # the context encoder's table instead of its own (an Identity keeps the list's indices)
        self._shared_steps = [self.context.item_width(n) if self.context is not None else None for n in sequences]
        for name, width in zip(sequences, self._shared_steps):
            if width is not None and width != embedding_dim:
                raise ValueError(f"dupn: behaviour sequence {name!r} shares an embedding table of width {width} "
                                 f"(shared_with), but DUPN embeds every step at embedding_dim={embedding_dim}")
        self.behaviour = nn.ModuleList(
            nn.Identity() if width is not None else nn.Embedding(input_spec.sequences[name], embedding_dim, padding_idx=0)
            for name, width in zip(sequences, self._shared_steps)
        )
        user_dim = 0
        self.rnn: nn.Module | None = None
        self.attention: AttentionPooling | None = None
        if sequences:
            n_props = len(sequences) - 1
            if cell == "lstm":
                width = embedding_dim * len(sequences) if combine == "concat" else embedding_dim
                self.rnn = nn.LSTM(width, hidden_size, batch_first=True)
            else:
                prop = (embedding_dim * n_props if combine == "concat" else embedding_dim) if n_props else 0
                self.rnn = PropertyGatedLSTM(embedding_dim, prop, hidden_size)
            self.attention = AttentionPooling(hidden_size, context_dim, attention_dim)
            user_dim = hidden_size
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.heads = TaskHeads(tasks, user_dim + context_dim, tower_hidden, act=activation, dropout=dropout)
        self.record = AttentionRecord()

    # -- representation ----------------------------------------------------------------------------
    def _steps(self, features: dict[str, Tensor]) -> tuple[Tensor, Tensor | None, Tensor]:
        """(combined step input [B, L, *], properties or None (property_gated), valid-step mask [B, L])."""
        ids = [features[f"seq:{name}"] for name in self.sequence_names]
        if any(t.shape != ids[0].shape for t in ids[1:]):  # compared as sizes (traced sizes do not hash)
            shapes = {name: list(t.shape) for name, t in zip(self.sequence_names, ids)}
            raise ValueError(f"DUPN: the behaviour sequences must be aligned (same [B, max_len]), got {shapes}")
        lengths = (ids[0] > 0).sum(1)
        mask = torch.arange(ids[0].shape[1], device=ids[0].device).unsqueeze(0) < lengths.unsqueeze(1)
        embs = [emb(t) if width is None else self.context.item_embeddings(name, t)
                for name, width, emb, t in zip(self.sequence_names, self._shared_steps, self.behaviour, ids)]

        def join(parts: list[Tensor]) -> Tensor:
            return torch.cat(parts, dim=-1) if self.combine == "concat" else torch.stack(parts).sum(0)

        if self.cell == "lstm":
            return join(embs), None, mask
        return embs[0], (join(embs[1:]) if len(embs) > 1 else None), mask

    def represent(self, features: dict[str, Tensor]) -> dict[str, Tensor | None]:
        """``{"user": [B, H] | None, "context": [N, C] | None, "attention": [B, L] | None,
        "hidden": [B, L, H] | None (the LSTM outputs), "mask": [B, L] | None}``; the context has
        one row per example, or ``1 + tokens`` rows per example with a text encoder."""
        context = self.context(features) if self.context is not None else None
        out: dict[str, Tensor | None] = dict(user=None, context=context, attention=None, hidden=None, mask=None)
        if self.rnn is None:
            return out
        x, props, mask = self._steps(features)
        lengths = mask.sum(1)
        if self.cell == "lstm":
            # valid steps are a prefix and the LSTM is causal, so h_t at a valid step never reads
            # padding: run over the batch's longest history only (no packing needed); outputs at
            # padded steps are zeroed and get zero attention weight
            steps = steps_to_run(lengths, x.shape[1])
            h = x.new_zeros(x.shape[0], x.shape[1], self.hidden_size)
            if steps:
                h[:, :steps] = self.rnn(x[:, :steps])[0] * mask[:, :steps, None].to(x.dtype)
        else:
            h = self.rnn(x, props, mask)
        user, weights = self.attention(h, mask, self._per_example(context, features))
        out.update(user=user, attention=weights, hidden=h, mask=mask)
        self.record.update(weights, lengths)
        return out

    def _rows_per_example(self, features: dict[str, Tensor]) -> int:
        if self.position_feature is None:
            return 1
        return features[f"seq:{self.position_feature}"].shape[1] + 1

    def _per_example(self, context: Tensor | None, features: dict[str, Tensor]) -> Tensor | None:
        """The context's row 0 of every example (its only row without a text encoder)."""
        k = self._rows_per_example(features)
        if context is None or k == 1:
            return context
        return context.reshape(-1, k, context.shape[1])[:, 0]

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        rep = self.represent(features)
        user, context = rep["user"], rep["context"]
        k = self._rows_per_example(features)
        if user is not None and k > 1:
            user = user.repeat_interleave(k, dim=0)  # every row of an example sees its user vector
        parts = [t for t in (user, context) if t is not None]
        z = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return self.read_out(self.heads(self.dropout(self.share(z))), features)

    # -- contract ----------------------------------------------------------------------------------
    def shared_modules(self) -> list[nn.Module]:
        parts: list[nn.Module | None] = [self.context, self.behaviour, self.rnn, self.attention]
        return [m for m in parts if m is not None and any(True for _ in m.parameters())]

    def last_shared_parameters(self) -> list[nn.Parameter]:
        """The recurrent layer's parameters (what produces the pooled states); the context
        encoder's when there is no behaviour sequence."""
        if self.rnn is not None:
            return [p for p in self.rnn.parameters() if p.requires_grad]
        return super().last_shared_parameters()

    @property
    def last_attention(self) -> Tensor | None:
        """The attention weights ``[B, L]`` of the last forward pass (detached; 0 on padding)."""
        return self.record.last[0] if self.record.last is not None else None

    def diagnostics(self) -> dict[str, Any]:
        """Attention over every row of the latest evaluation pass (the validation split, when the
        trainer logs them), else over the last batch: mean entropy (nats) over rows with a history,
        mean entropy divided by ``log(length)`` over rows with >= 2 steps (1 = uniform, 0 = one
        step), mean largest weight, mean history length, share of empty histories."""
        return self.record.summary()
