"""Dependency parsing by head selection, with relation labels (JMT, Hashimoto et al., EMNLP 2017,
Sec. 2.4; head selection after Zhang, Cheng & Lapata, EACL 2017).

Every token ``t`` of a text feature picks its head among the candidates ``j = 0`` (the root) and
``j = 1..n`` (the tokens of its sentence), by a softmax over the head scores ``m(t, j)`` (JMT:
``m(t, j) = h_t^T W_d h_j``, the root a learned vector); the relation of ``t`` to its head is then a
softmax over ``R`` relation labels. The labels are CoNLL-U heads (``heads``: one integer per token,
``0`` the root, tokens numbered ``1..n``) and, optionally, relations (a second column, one label
per token). Both may be list columns or strings split on ``separator`` like the text.

**Output layout.** The model gives, for every token ``t`` of a batch whose token axis is ``L`` long
(``L = output.shape[1]``), a vector of ``C + 3R`` numbers, ``C = L + 1`` for a model that scores
the batch's own positions (``output_dim = max_len + 1 + 3R`` is the widest, at ``L = max_len``):

* ``[:C]``: the head scores ``m(t, j)`` of candidates ``j = 0..C-1`` (0 the root, ``j`` the token at
  position ``j``). Candidates past the sentence's end should get a very negative score from the
  model; the metrics and predictions also ignore them (they take the arg-max over ``j <= n``,
  ``j != t``: a token is never its own head).
* ``[C : C+R]``: ``a_t``, the dependent part of token ``t``'s relation scores;
* ``[C+R : C+2R]``: ``c_t``, the head part of token ``t`` (used when ``t`` is some token's head);
* ``[C+2R : C+3R]``: ``c_0``, the head part of the root.

The relation logits of dependent ``t`` with head ``j`` are ``a_t + c_j``: a linear classifier on the
concatenation ``[h_t; h_j]`` decomposes exactly like this (``W [h_t; h_j] + b = (W_1 h_t + b) +
W_2 h_j``), i.e. JMT's label classifier without its hidden layer. The kind reads the candidate
block as whatever precedes the last ``3R`` columns, so a plain per-token head of width
``output_dim`` (``C = max_len + 1``) also works.

**Loss.** Per labelled token: the cross-entropy of the head scores against the gold head, plus (with
relations) the cross-entropy of the relation logits at the *gold* head. Like every kind, the loss
reads nothing from the rows of unlabelled tokens (the contract: masked elements may hold anything),
so when the gold head is itself an unlabelled token its head part ``c_j`` counts as 0 in the loss.

**Metrics.** ``uas``: the share of labelled tokens whose arg-max head is the gold head (punctuation
included); ``las`` (with relations): head right and the arg-max relation at the *predicted* head
right. Without the text at hand the metrics take a row's length to be its furthest labelled token
or gold head (at most the true length: candidates beyond it are ignored).

**Encoding.** Like :mod:`polytask.tasks.tagging`, a row keeps its *last* ``max_len`` tokens,
left-aligned (the sequence encoder's truncation); heads are renumbered to the kept positions
(``1..L``), and a token whose head fell in the dropped prefix is masked. The label of a token is
``head + (max_len + 1) * relation`` (relation 0 without a relations column) in an ``[N, max_len]``
int64 tensor, with a mask of the same shape.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from torch import Tensor

from polytask.errors import DataError
from polytask.registry import TASK_KINDS
from polytask.tasks.base import Metric, TaskKind
from polytask.tasks.multiclass import class_ids, fit_classes
from polytask.tasks.tagging import UNLABELLED, TokenLabels, kept_positions, split_lists
from polytask.tasks.task import Task

def _head_numbers(items: pa.Array, rows: np.ndarray, *, source: str, column: str) -> np.ndarray:
    """Head items (integers, or text holding integers) -> float64 with NaN for missing ones; a
    value that is not a whole number is an error naming the file, column and row."""
    from polytask.data.encoders import _is_string

    if _is_string(items.type):
        text = pc.utf8_trim_whitespace(pc.cast(items, pa.string()))
        text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
        try:
            items = pc.cast(text, pa.float64())
        except pa.ArrowInvalid:
            values = text.to_pylist()
            for i, v in enumerate(values):
                try:
                    if v is not None:
                        float(v)
                except ValueError:
                    raise DataError(
                        f"{source}: head column {column!r} holds {v!r} at row {int(rows[i])}, not a head number"
                    ) from None
            raise DataError(f"{source}: head column {column!r} holds values that are not head numbers") from None
    elif not (pa.types.is_integer(items.type) or pa.types.is_floating(items.type) or pa.types.is_null(items.type)):
        raise DataError(f"{source}: head column {column!r} must hold lists of integers, found items of type {items.type}")
    x = pc.cast(items, pa.float64()).to_numpy(zero_copy_only=False)
    bad = ~np.isnan(x) & (x != np.floor(x))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: head column {column!r} holds {x[i]} at row {int(rows[i])}, not a whole number")
    return x


def head_candidates(output: Tensor, num_relations: int) -> int:
    """``C``: how many head candidates (root included) each token's output scores."""
    c = output.shape[-1] - 3 * num_relations
    if c < output.shape[1] + 1:
        raise ValueError(
            f"dependency output has {output.shape[-1]} columns per token but a batch of {output.shape[1]} positions "
            f"and {num_relations} relations needs at least {output.shape[1] + 1 + 3 * num_relations} "
            "(head scores of the root and every position, then 3 x relations)"
        )
    return c


def relation_logits(output: Tensor, head: Tensor, num_relations: int) -> Tensor:
    """``[B, L, R]`` relation logits ``a_t + c_{head[t]}`` of every token with the given heads
    (``head`` ``[B, L]``, 0 = root; see the module docstring for the layout)."""
    r = num_relations
    c = head_candidates(output, r)
    a, part, root = output[..., c : c + r], output[..., c + r : c + 2 * r], output[..., c + 2 * r : c + 3 * r]
    index = (head.long() - 1).clamp(0, max(output.shape[1] - 1, 0))
    at_head = torch.gather(part, 1, index.unsqueeze(-1).expand(*index.shape, r)) if output.shape[1] else part
    return a + torch.where((head == 0).unsqueeze(-1), root, at_head)


def best_heads(output: Tensor, lengths: Tensor, num_relations: int) -> Tensor:
    """``[B, L]`` arg-max head of every token over the candidates ``0..lengths[b]`` of its row,
    itself excluded (a token is never its own head)."""
    c = head_candidates(output, num_relations)
    scores = output[..., :c].float()
    j = torch.arange(c, device=output.device)
    itself = j == torch.arange(1, output.shape[1] + 1, device=output.device).unsqueeze(1)  # [L, C]: no self-loops
    allowed = (j <= lengths.reshape(-1, 1, 1)) & ~itself & ~scores.isnan()
    return scores.masked_fill(~allowed, float("-inf")).argmax(-1)


@TASK_KINDS.register("dependency")
class Dependency(TokenLabels, TaskKind):
    """Dependency parsing by head selection (JMT's dependency layer): per token a softmax over
    head candidates (root and the sentence's tokens) and, with ``relations``, over relation labels
    at the head; UAS and LAS. The output layout is in the module docstring.

    Args:
        tokens: the text feature (a declared ``sequence`` feature) whose tokens the heads follow.
        relations: the column of relation labels (one per token, like the heads); needed for LAS.
        separator: heads and relations given as strings are split on it (it must be the text
            feature's separator; taken from the feature when omitted); predictions are joined by it.
        max_len: token positions per row; must equal the text feature's ``max_len`` (taken from the
            feature when omitted).
        classes: the relation labels in index order (fitted on train if omitted).
    """

    name = "dependency"
    needs, labels_are = "dependency parsing", "heads"
    scalar_output = False
    label_dtype = torch.int64
    #: the output is the head-selection layout of the module docstring (models that score heads,
    #: such as JMT's, ask for this flag)
    head_selection: ClassVar[bool] = True
    example_options = {"tokens": "text", "relations": "deprel"}

    def __init__(
        self,
        *,
        tokens: str,
        relations: str | None = None,
        separator: str | None = None,
        max_len: int | None = None,
        classes: list[Any] | None = None,
    ) -> None:
        if classes is not None and relations is None:
            raise ValueError("classes are relation labels; set relations to their column")
        if classes is not None and len(classes) < 1:
            raise ValueError("classes must list at least one relation")
        self._bind_text(tokens, separator, max_len)
        self.relations = relations
        self.classes = list(classes) if classes is not None else None

    @property
    def num_relations(self) -> int:
        """``R``: relation labels (0 without a relations column)."""
        if self.relations is None:
            return 0
        if self.classes is None:
            raise ValueError("a dependency task with relations needs its relation classes (fitted on the training labels)")
        return len(self.classes)

    def options(self) -> dict[str, Any]:
        out = self.text_options()
        for key, value in (("relations", self.relations), ("classes", self.classes)):
            if value is not None:
                out[key] = value
        return out

    @property
    def output_dim(self) -> int:
        """``max_len + 1 + 3R``: head scores of the root and every position, then ``a_t``, ``c_t``, ``c_0``."""
        return self.max_len + 1 + 3 * self.num_relations

    # -- labels -----------------------------------------------------------------------------
    def label_columns(self, task: Task) -> list[str]:
        return [task.label] + ([self.relations] if self.relations is not None else [])

    def _lists(self, table: pa.Table, column: str, source: str) -> tuple[pa.ListArray, np.ndarray]:
        return split_lists(table.column(column), self.separator, source=source, column=column)

    def fit(self, table: pa.Table, task: Task, source: str) -> None:
        if self.relations is None or self.classes is not None:
            return
        rels, _ = self._lists(table, self.relations, source)
        self.classes = fit_classes(pc.list_flatten(rels), None, source=source, column=self.relations, task=task.name)

    def encode(self, table: pa.Table, task: Task, source: str) -> tuple[np.ndarray, np.ndarray]:
        heads, labelled = self._lists(table, task.label, source)
        text, _ = self._lists(table, self.tokens, source)
        n_heads, n_tokens = np.diff(heads.offsets.to_numpy()), np.diff(text.offsets.to_numpy())
        bad = labelled & (n_heads != n_tokens)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: head column {task.label!r} of task {task.name!r} holds {n_heads[row]} heads at row {row} "
                f"but text column {self.tokens!r} holds {n_tokens[row]} tokens there"
            )
        item_rows = pc.list_parent_indices(heads).to_numpy()
        head = _head_numbers(pc.list_flatten(heads), item_rows, source=source, column=task.label)
        known = ~np.isnan(head)
        out_of_range = known & ((head < 0) | (head > n_tokens[item_rows]))
        if out_of_range.any():
            i = int(np.flatnonzero(out_of_range)[0])
            row = int(item_rows[i])
            raise DataError(
                f"{source}: head column {task.label!r} holds head {int(head[i])} at row {row}, outside 0..{n_tokens[row]} "
                f"(0 the root, 1..{n_tokens[row]} the row's tokens)"
            )
        within_row = np.arange(len(head)) - np.repeat(np.cumsum(n_heads) - n_heads, n_heads)  # 0-based token index
        loop = known & (head == within_row + 1)
        if loop.any():
            i = int(np.flatnonzero(loop)[0])
            raise DataError(f"{source}: head column {task.label!r} makes token {int(head[i])} its own head at row {int(item_rows[i])}")
        rel_ids = np.zeros(len(head), dtype=np.int64)
        if self.relations is not None:
            rels, rel_present = self._lists(table, self.relations, source)
            n_rels = np.diff(rels.offsets.to_numpy())
            missing = labelled & ~rel_present
            if missing.any():
                row = int(np.flatnonzero(missing)[0])
                raise DataError(f"{source}: relation column {self.relations!r} of task {task.name!r} is empty at row {row}, "
                                f"which has heads in {task.label!r}")
            bad = labelled & (n_rels != n_tokens)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(
                    f"{source}: relation column {self.relations!r} of task {task.name!r} holds {n_rels[row]} relations "
                    f"at row {row} but text column {self.tokens!r} holds {n_tokens[row]} tokens there"
                )
            rel_start = rels.offsets.to_numpy()[:-1].astype(np.int64) - int(rels.offsets[0].as_py())
            ids, rel_known = class_ids(pc.list_flatten(rels), self.classes or [], source=source, column=self.relations,
                                       rows=pc.list_parent_indices(rels).to_numpy())
        n, width = len(n_heads), self.max_len
        label = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros((n, width), dtype=bool)
        lengths = np.where(labelled, n_heads, 0)
        rows, pos, within = kept_positions(lengths, width)
        start = heads.offsets.to_numpy()[:-1].astype(np.int64) - int(heads.offsets[0].as_py())
        flat = start[rows] + within
        dropped = (lengths - np.minimum(lengths, width))[rows]  # tokens cut from the row's front
        h = np.where(known[flat], head[flat], 0).astype(np.int64)
        kept = known[flat] & ((h == 0) | (h > dropped))  # a head in the dropped prefix: unlabelled
        shifted = np.where(h == 0, 0, h - dropped)
        if self.relations is not None:
            rel_flat = rel_start[rows] + within
            rel_ids = np.where(rel_known[rel_flat], ids[rel_flat], 0)
            kept &= rel_known[rel_flat]
        label[rows, pos] = np.where(kept, shifted + (width + 1) * rel_ids, 0)
        mask[rows, pos] = kept
        return label, mask

    def _split(self, label: Tensor) -> tuple[Tensor, Tensor]:
        """Encoded labels -> ``(head, relation)`` (labels must be >= 0)."""
        width = self.max_len + 1
        return label.long() % width, label.long() // width

    # -- loss -------------------------------------------------------------------------------
    def elementwise_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        # [B, L, C + 3R] scores, [B, L] labels -> [B, L]; unlabelled tokens hold label 0 (root, relation 0)
        r = self.num_relations
        c = head_candidates(output, r)
        head, relation = self._split(label)
        loss = F.cross_entropy(output[..., :c].float().transpose(1, 2), head, reduction="none")
        if r:
            logits = relation_logits(output.float(), head, r)
            loss = loss + F.cross_entropy(logits.transpose(1, 2), relation, reduction="none")
        return loss

    # -- metrics ----------------------------------------------------------------------------
    def metrics(self) -> tuple[Metric, ...]:
        out = [Metric("uas", True, self.uas)]
        if self.relations is not None:
            out.append(Metric("las", True, self.las))
        return tuple(out)

    def _scored(self, output: Tensor, label: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(keep, predicted head, gold head, gold relation)`` of ``[R, L]`` labels holding -1 at
        unlabelled tokens. A row's candidates stop at its furthest labelled token or gold head."""
        keep = label >= 0
        head, relation = self._split(torch.where(keep, label.long(), torch.zeros_like(label.long())))
        positions = torch.arange(1, label.shape[1] + 1, device=label.device)
        reach = torch.where(keep, torch.maximum(head, positions), torch.zeros_like(head))
        length = reach.amax(1) if label.shape[1] else label.new_zeros(label.shape[0])
        return keep, best_heads(output, length, self.num_relations), head, relation

    def uas(self, output: Tensor, label: Tensor) -> float:
        """Unlabelled attachment score: share of labelled tokens (``label >= 0``) whose arg-max head is gold."""
        keep, predicted, gold, _ = self._scored(output, label)
        if not keep.any():
            return float("nan")
        return float((predicted == gold)[keep].float().mean())

    def las(self, output: Tensor, label: Tensor) -> float:
        """Labelled attachment score: head right and the arg-max relation at the predicted head right."""
        keep, predicted, gold, relation = self._scored(output, label)
        if not keep.any():
            return float("nan")
        rel = relation_logits(output.float(), predicted, self.num_relations).argmax(-1)
        return float(((predicted == gold) & (rel == relation))[keep].float().mean())

    def mark_unlabelled(self, label: Tensor, keep: Tensor) -> Tensor:
        """Each metric receives ``[R, L, C + 3R]`` outputs and ``[R, L]`` labels holding -1 at
        unlabelled tokens."""
        return torch.where(keep, label.long(), torch.full_like(label.long(), UNLABELLED))

    # -- predictions ------------------------------------------------------------------------
    def predict(self, output: Tensor) -> Tensor:
        """The raw scores (float): heads and relations are decoded per row by
        :meth:`prediction_columns`, which knows each row's length."""
        return output.float()

    def _decode(self, prediction: np.ndarray, table: pa.Table) -> tuple[list[list[int]], list[list[str]] | None]:
        """Per row: the predicted heads of its kept tokens in the row's own numbering (a kept
        token at position ``p`` of a row that lost ``d`` tokens is token ``p + d``; 0 the root),
        and the predicted relations (None without relations)."""
        text, _ = split_lists(table.column(self.tokens), self.separator, source="input", column=self.tokens)
        n_tokens = np.diff(text.offsets.to_numpy())
        kept = np.minimum(n_tokens, self.max_len)
        out = torch.from_numpy(np.asarray(prediction, dtype=np.float32))
        if out.shape[1] < int(kept.max(initial=0)):
            raise ValueError(f"dependency predictions cover {out.shape[1]} positions but a row keeps {int(kept.max())} tokens")
        best = best_heads(out, torch.from_numpy(kept.astype(np.int64)), self.num_relations)
        rel = relation_logits(out, best, self.num_relations).argmax(-1).numpy() if self.relations is not None else None
        best = best.numpy()
        dropped = n_tokens - kept
        heads = [[int(h + dropped[r]) if h else 0 for h in best[r, :k]] for r, k in enumerate(kept)]
        names = [str(c) for c in self.classes or []]
        relations = [[names[i] for i in rel[r, :k]] for r, k in enumerate(kept)] if rel is not None else None
        return heads, relations

    def prediction_columns(self, task: str, prediction: np.ndarray, table: pa.Table) -> dict[str, pa.Array]:
        """``<task>``: the predicted heads of each row joined by ``separator`` (one per token the
        sequence encoder kept, numbered as in the row: 0 the root); ``<task>_relation``: the
        predicted relations (at the predicted heads) joined likewise."""
        heads, relations = self._decode(prediction, table)
        sep = self.separator
        out = {task: pa.array([sep.join(map(str, h)) for h in heads], pa.string())}
        if relations is not None:
            out[f"{task}_relation"] = pa.array([sep.join(r) for r in relations], pa.string())
        return out

    def label_predictions(self, task: Task, prediction: np.ndarray, table: pa.Table) -> dict[str, pa.Array]:
        """``{heads column: list<int32> per row, relations column: list<string> per row}``, as a
        CoNLL-U file holds them, for the tokens the sequence encoder kept."""
        heads, relations = self._decode(prediction, table)
        out = {task.label: pa.array(heads, pa.list_(pa.int32()))}
        if relations is not None and self.relations is not None:
            out[self.relations] = pa.array(relations, pa.list_(pa.string()))
        return out
