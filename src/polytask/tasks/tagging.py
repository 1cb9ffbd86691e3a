"""Sequence tagging: one class per token of a text feature (part-of-speech, named entities).

The labels follow the token positions of the text feature's sequence tensor exactly: like
:class:`~polytask.data.encoders.SequenceEncoder`, a row keeps its *last* ``max_len`` tokens,
left-aligned, and the rest of the row is padding (masked). The tag column holds one tag per token
(a list column, or a string split on ``separator`` like the text); a row whose tag count differs
from its token count is an error naming the file, column and row.

With ``scheme: bio`` the tags are BIO chunk tags (``B-PER``, ``I-PER``, ``O``) and the task is also
scored by span F1 (micro F1 over chunks, CoNLL-2000 style, computed by ``seqeval``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from torch import Tensor

from polytask.errors import ConfigError, DataError
from polytask.registry import TASK_KINDS
from polytask.tasks.base import Metric
from polytask.tasks.multiclass import Classes, class_ids, fit_classes
from polytask.tasks.task import Task

if TYPE_CHECKING:
    from polytask.data.schema import FeatureSpec

#: label placeholder marking an unlabelled token in what the metrics receive
UNLABELLED = -1
#: what a task not yet bound to its text feature assumes (a text split on spaces, 50 positions)
DEFAULT_SEPARATOR, DEFAULT_MAX_LEN = " ", 50


def split_lists(col: pa.ChunkedArray | pa.Array, separator: str, *, source: str, column: str) -> tuple[pa.ListArray, np.ndarray]:
    """A list column, or a string column split on ``separator``, as lists of items exactly as the
    sequence encoder reads them (empty items of split strings dropped, a missing row an empty
    list), and which rows were present (not null)."""
    from polytask.data.encoders import SequenceEncoder
    from polytask.data.schema import FeatureSpec

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    present = pc.is_valid(col).to_numpy(zero_copy_only=False).astype(bool)
    # the sequence encoder's own splitting, so tags and tokens cannot be counted differently
    reader = SequenceEncoder(FeatureSpec(column, "sequence", separator=separator))
    return reader._lists(col, source), present


def kept_positions(lengths: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, positions, item offsets within each row)`` of the items kept when each row keeps
    its last ``width`` items, left-aligned (the sequence encoder's truncation)."""
    kept = np.minimum(lengths, width)
    rows = np.repeat(np.arange(len(lengths)), kept)
    pos = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)
    return rows, pos, np.repeat(lengths - kept, kept) + pos


def bio_classes(values: list[str], *, source: str, column: str, task: str) -> list[str]:
    """``O`` then ``B-t``, ``I-t`` for every chunk type ``t`` seen (both, so an ``I-`` tag first
    seen in validation is known); a tag that is not BIO stops with an error naming it."""
    types = set()
    for v in values:
        if v == "O":
            continue
        if len(v) < 3 or v[:2] not in ("B-", "I-"):
            raise DataError(f"{source}: tag column {column!r} of task {task!r} holds {v!r}, not a BIO tag (O, B-<type>, I-<type>)")
        types.add(v[2:])
    if not types:
        raise DataError(f"{source}: tag column {column!r} of task {task!r} holds no B-/I- tags")
    return ["O"] + [f"{p}-{t}" for t in sorted(types) for p in ("B", "I")]


def token_accuracy(output: Tensor, label: Tensor) -> float:
    """Share of labelled tokens (``label >= 0``) whose arg-max class is the label."""
    keep = label >= 0
    if not keep.any():
        return float("nan")
    return float((output.argmax(-1)[keep] == label[keep]).float().mean())


class TokenLabels:
    """What every kind with one label per token of a text feature shares (tagging, dependency):
    the text feature (``tokens``), and its ``separator`` and ``max_len``, taken from the feature
    when the task does not set them and checked against it (:meth:`check_inputs`), so labels and
    tokens are split and truncated the same way. Subclasses call :meth:`_bind_text` in their
    constructor and set ``needs`` (what the task is, for messages)."""

    level = "token"
    #: how messages name what needs the text feature, and what its labels are
    needs: ClassVar[str] = "a token-level task"
    labels_are: ClassVar[str] = "labels"

    def _bind_text(self, tokens: str, separator: str | None, max_len: int | None) -> None:
        if max_len is not None and max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        if separator is not None and not separator:
            raise ValueError("separator must not be empty")
        self.tokens = tokens
        # None until bound to the text feature (check_inputs); a kind used on its own reads like a
        # sequence feature split on spaces with the default max_len
        self._separator = separator
        self._max_len = max_len

    @property
    def separator(self) -> str:
        return self._separator if self._separator is not None else DEFAULT_SEPARATOR

    @property
    def max_len(self) -> int:
        return self._max_len if self._max_len is not None else DEFAULT_MAX_LEN

    @property
    def token_feature(self) -> str:
        return self.tokens

    def text_options(self) -> dict[str, Any]:
        """``tokens``, and ``separator``/``max_len`` once set."""
        out: dict[str, Any] = {"tokens": self.tokens}
        if self._separator is not None:
            out["separator"] = self._separator
        if self._max_len is not None:
            out["max_len"] = self._max_len
        return out

    def check_inputs(self, task: Task, features: Mapping[str, FeatureSpec]) -> None:
        f = features.get(self.tokens)
        where = f"task {task.name!r}: text feature {self.tokens!r}"
        if f is None:
            raise ConfigError(f"{where} is not a declared feature; declare it as a sequence feature (separator: {self.separator!r})")
        if f.type != "sequence":
            raise ConfigError(f"{where} is a {f.type} feature; {self.needs} needs a sequence feature")
        if self._max_len is None:
            self._max_len = f.max_len
        if self._separator is None:
            self._separator = f.separator
        if f.max_len != self.max_len:
            raise ConfigError(f"{where} has max_len {f.max_len} but the task has max_len {self.max_len}; set both the same")
        if f.separator != self.separator:
            raise ConfigError(
                f"{where} is split on {f.separator!r} but the task's {self.labels_are} on {self.separator!r}; set both the same"
            )


@TASK_KINDS.register("tagging")
class Tagging(TokenLabels, Classes):
    """Sequence tagging: one class per token of a text feature; masked per-token cross-entropy,
    token accuracy and (BIO tags) span F1.

    Args:
        tokens: the text feature (a declared ``sequence`` feature) whose tokens the tags follow.
        separator: tags given as a string column are split on it (as the text feature is: it must
            be the text feature's separator; taken from the feature when omitted); predictions are
            written joined by it.
        max_len: token positions per row; must equal the text feature's ``max_len`` (taken from
            the feature when omitted).
        scheme: ``none``, or ``bio`` for BIO chunk tags (adds the ``span_f1`` metric).
        num_classes: number of tags (inferred from the training tags if omitted).
        classes: the tags in class-index order (fitted on train if omitted).
    """

    name = "tagging"
    needs, labels_are = "tagging", "tags"
    example_options = {"tokens": "text", "scheme": "bio"}

    def __init__(
        self,
        *,
        tokens: str,
        separator: str | None = None,
        max_len: int | None = None,
        scheme: Literal["none", "bio"] = "none",
        num_classes: int | None = None,
        classes: list[Any] | None = None,
    ) -> None:
        super().__init__(num_classes=num_classes, classes=classes)
        if scheme not in ("none", "bio"):
            raise ValueError(f"scheme must be 'none' or 'bio', got {scheme!r}")
        if scheme == "bio" and self.classes is not None:
            bad = [c for c in self.classes if c != "O" and not (isinstance(c, str) and c[:2] in ("B-", "I-") and len(c) > 2)]
            if bad:
                raise ValueError(f"scheme bio: class {bad[0]!r} is not a BIO tag (O, B-<type>, I-<type>)")
        self._bind_text(tokens, separator, max_len)
        self.scheme = scheme

    def options(self) -> dict[str, Any]:
        out = {**self.text_options(), "scheme": self.scheme}
        return {**out, **super().options()}

    # -- labels -----------------------------------------------------------------------------
    def fit(self, table: pa.Table, task: Task, source: str) -> None:
        if self.classes is not None:
            return
        lists, _ = split_lists(table.column(task.label), self.separator, source=source, column=task.label)
        items = pc.list_flatten(lists)
        if self.scheme == "bio":
            from polytask.data.encoders import to_strings

            seen = [v for v in pc.unique(to_strings(items)).to_pylist() if v is not None]
            self.classes = bio_classes(seen, source=source, column=task.label, task=task.name)
            if self.num_classes and self.num_classes != len(self.classes):
                raise DataError(
                    f"{source}: task {task.name!r} declares num_classes={self.num_classes} but its BIO tags "
                    f"in training make {len(self.classes)} classes ({', '.join(self.classes)})"
                )
        else:
            self.classes = fit_classes(items, self.num_classes, source=source, column=task.label, task=task.name)
        self.num_classes = len(self.classes)

    def encode(self, table: pa.Table, task: Task, source: str) -> tuple[np.ndarray, np.ndarray]:
        tags, labelled = split_lists(table.column(task.label), self.separator, source=source, column=task.label)
        text, _ = split_lists(table.column(self.tokens), self.separator, source=source, column=self.tokens)
        n_tags, n_tokens = np.diff(tags.offsets.to_numpy()), np.diff(text.offsets.to_numpy())
        bad = labelled & (n_tags != n_tokens)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: tag column {task.label!r} of task {task.name!r} holds {n_tags[row]} tags at row {row} "
                f"but text column {self.tokens!r} holds {n_tokens[row]} tokens there"
            )
        items = pc.list_flatten(tags)
        item_rows = pc.list_parent_indices(tags).to_numpy()
        ids, known = class_ids(items, self.classes or list(range(self.output_dim)), source=source, column=task.label,
                               rows=item_rows)
        n, width = len(n_tags), self.max_len
        label = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros((n, width), dtype=bool)
        lengths = np.where(labelled, n_tags, 0)
        rows, pos, within = kept_positions(lengths, width)
        start = tags.offsets.to_numpy()[:-1].astype(np.int64) - int(tags.offsets[0].as_py())
        flat = start[rows] + within
        label[rows, pos] = ids[flat]
        mask[rows, pos] = known[flat]
        return label, mask

    # -- loss -------------------------------------------------------------------------------
    def elementwise_loss(self, output: Tensor, label: Tensor, mask: Tensor) -> Tensor:
        # [B, L, C] logits, [B, L] classes -> [B, L]; padded/unlabelled tokens hold class 0
        return F.cross_entropy(output.float().transpose(1, 2), label.long(), reduction="none")

    # -- metrics ----------------------------------------------------------------------------
    def metrics(self) -> tuple[Metric, ...]:
        out = [Metric("token_accuracy", True, token_accuracy)]
        if self.scheme == "bio":
            out.append(Metric("span_f1", True, self.span_f1))
        return tuple(out)

    def span_f1(self, output: Tensor, label: Tensor) -> float:
        """Micro F1 over BIO chunks of the labelled tokens (``label >= 0``) of every row, by
        ``seqeval`` (default CoNLL mode); NaN when the labels hold no chunk."""
        try:
            from seqeval.metrics import f1_score
        except ImportError:
            raise ImportError("the span_f1 metric of a bio tagging task needs seqeval: pip install 'polytask[text]'") from None

        names = np.array([str(c) for c in (self.classes or [])], dtype=object)
        pred = output.argmax(-1).cpu().numpy()
        lab = label.cpu().numpy()
        y_true, y_pred = [], []
        for p, y in zip(pred, lab):
            keep = y >= 0
            y_true.append(list(names[y[keep]]))
            y_pred.append(list(names[p[keep]]))
        if not any(t != "O" for seq in y_true for t in seq):
            return float("nan")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # seqeval warns when nothing is predicted (F1 = 0)
            return float(f1_score(y_true, y_pred))

    def mark_unlabelled(self, label: Tensor, keep: Tensor) -> Tensor:
        """Each metric receives ``[R, L, C]`` outputs and ``[R, L]`` labels holding -1 at
        unlabelled tokens."""
        return torch.where(keep, label.long(), torch.full_like(label.long(), UNLABELLED))

    # -- predictions ------------------------------------------------------------------------
    def predict(self, output: Tensor) -> Tensor:
        return torch.softmax(output.float(), dim=-1)

    def prediction_columns(self, task: str, prediction: np.ndarray, table: pa.Table) -> dict[str, pa.Array]:
        """``<task>``: the predicted tags of each row joined by ``separator``, one per token the
        sequence encoder kept (a row longer than ``max_len`` gets tags for its last ``max_len``
        tokens)."""
        text, _ = split_lists(table.column(self.tokens), self.separator, source="input", column=self.tokens)
        kept = np.minimum(np.diff(text.offsets.to_numpy()), self.max_len)
        names = np.array([str(c) for c in self.decode(np.arange(self.output_dim))], dtype=object)
        best = prediction.argmax(-1)
        return {task: pa.array([self.separator.join(names[best[r, :k]]) for r, k in enumerate(kept)], pa.string())}

    def label_predictions(self, task: Task, prediction: np.ndarray, table: pa.Table) -> dict[str, pa.Array]:
        """``{label column: one list of predicted tags per row}`` (a list column: what a CoNLL-U
        or CoNLL-2000 file holds), for the tokens the sequence encoder kept."""
        text, _ = split_lists(table.column(self.tokens), self.separator, source="input", column=self.tokens)
        kept = np.minimum(np.diff(text.offsets.to_numpy()), self.max_len)
        names = [str(c) for c in self.decode(np.arange(self.output_dim))]
        best = prediction.argmax(-1)
        return {task.label: pa.array([[names[i] for i in best[r, :k]] for r, k in enumerate(kept)], pa.list_(pa.string()))}
