"""Joint Many-Task model, JMT (Hashimoto, Xiong, Tsuruoka, Socher: "A Joint Many-Task Model:
Growing a Neural Network for Multiple NLP Tasks", EMNLP 2017).

One bidirectional LSTM level per task, stacked in the order the tasks are listed (the paper's
order is POS -> chunking -> dependencies -> relatedness -> entailment; any subset, in any order,
builds). Level ``k`` reads, per token, ``[h_t^(k-1); x_t; sum of the label embeddings of the
token classification tasks below]`` (Sec. 2.2-2.3: the *shortcut* ``x_t`` and the *label
embeddings* can each be switched off, the paper's ablations); level 1 reads ``x_t``, the word
representation (word embedding ⊕ mean of character n-gram embeddings, Sec. 2.1).

What each level predicts depends on its task's kind, asked through the kind's properties:

* a token-level classification task (``tagging``): a ReLU hidden layer and a softmax classifier on
  ``h_t`` (Sec. 2.2); its label embedding ``y_t = sum_j p(j | h_t) l(j)`` feeds the levels above;
* a head-selection task (a token-level kind with ``head_selection = True``, the ``dependency``
  kind): ``m(t, j) = h_t^T W_d h_j`` over a learned root vector and the sentence's tokens, plus
  additive relation scores, in the kind's ``[L, L + 1 + 3R]`` layout (Sec. 2.4,
  :mod:`polytask.nn.head_selection`);
* a row-level task (relatedness, entailment, any sentence classification or regression): the
  element-wise max of the level's token states (Sec. 2.5). With a second text feature (``pair``)
  both sentences run through the *same* stack and are compared by ``[|a - b|; a * b]`` (the first
  row-level task) or ``[a - b; a * b]`` (later ones); then Maxout layers (one for the first
  row-level task, three for later ones) and a linear output. A row-level task's label embedding
  (softmax over its outputs) joins the *next* row-level task's features (relatedness ->
  entailment).

Successive regularisation (Sec. 2.6): a schedule that trains one task at a time calls
:meth:`JMT.begin_task` before each task; the model then snapshots the level below (its BiLSTM with
weight ``successive``, its classifier with ``successive_classifier``; for the first task, the word
representation) and :meth:`JMT.regularization` returns ``delta * ||theta - theta'||^2`` while that
task trains. The ``lambda ||W||^2`` terms of the paper are the trainer's ``train.l2``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polytask.data.schema import InputSpec
from polytask.models.base import MultiTaskModel
from polytask.nn.head_selection import HeadSelection
from polytask.nn.label_embedding import LabelEmbedding
from polytask.nn.maxout import Maxout
from polytask.nn.sentence_pair import PAIR_MODES, masked_max, pair_features
from polytask.nn.sequence import run_packed, valid_positions
from polytask.nn.word_representation import WordRepresentation
from polytask.registry import MODELS
from polytask.tasks import Task


def glorot_(weight: Tensor) -> Tensor:
    """Uniform in ``+-sqrt(6 / (rows + cols))`` (Hashimoto et al., EMNLP 2017, Sec. 2.7)."""
    bound = math.sqrt(6.0 / (weight.shape[0] + weight.shape[1]))
    return nn.init.uniform_(weight, -bound, bound)


def init_lstm_(lstm: nn.LSTM) -> None:
    """Every weight matrix uniform in ``+-sqrt(6 / (rows + cols))``, biases zero but the forget
    gate's, which is 1 (Sec. 2.7; PyTorch adds two bias vectors, so one of them holds the 1)."""
    hidden = lstm.hidden_size
    for name, p in lstm.named_parameters():
        with torch.no_grad():
            if name.startswith("weight"):
                glorot_(p)
            else:
                p.zero_()
                if name.startswith("bias_ih"):
                    p[hidden : 2 * hidden] = 1.0  # gate order i, f, g, o


def is_head_selection(task: Task) -> bool:
    """Does the task's kind score heads (the ``dependency`` layout)? Asked of the kind's
    ``head_selection`` flag, not its name."""
    return task.level == "token" and bool(getattr(task.spec, "head_selection", False))


def relation_count(task: Task) -> int:
    """``R``, the relation labels of a head-selection task (0 when it predicts heads only):
    the kind's ``num_relations`` (or ``num_classes``)."""
    r = getattr(task.spec, "num_relations", None)
    return int(r if r is not None else getattr(task.spec, "num_classes", None) or 0)


class TokenClassifier(nn.Module):
    """JMT's per-token classifier (Sec. 2.2): one ReLU hidden layer, then the class logits.

    The output layer starts at zero (Sec. 2.7) unless ``zero_init`` is False."""

    def __init__(self, in_dim: int, hidden: int, num_classes: int, *, dropout: float = 0.0, zero_init: bool = True) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_dim, hidden)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.out = nn.Linear(hidden, num_classes)
        glorot_(self.hidden.weight)
        nn.init.zeros_(self.hidden.bias)
        if zero_init:
            nn.init.zeros_(self.out.weight)
        else:
            glorot_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: Tensor) -> Tensor:
        return self.out(self.dropout(F.relu(self.hidden(h))))


class RowHead(nn.Module):
    """Maxout layers and a linear output on a sentence (pair) feature vector (Sec. 2.5)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, *, layers: int, pieces: int, dropout: float = 0.0,
                 zero_init: bool = True) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * layers
        self.maxouts = nn.ModuleList(Maxout(a, b, pieces) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.out = nn.Linear(hidden, out_dim)
        if zero_init:
            nn.init.zeros_(self.out.weight)
        else:
            glorot_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, f: Tensor) -> Tensor:
        for maxout in self.maxouts:
            f = maxout(self.dropout(f))
        return self.out(self.dropout(f))


@MODELS.register("jmt")
class JMT(MultiTaskModel):
    """Joint Many-Task model (Hashimoto et al., EMNLP 2017): one BiLSTM level per task, stacked in
    task order, with shortcut connections, label embeddings and successive regularisation.

    Outputs: ``[B, L, C]`` for token classification, ``[B, L, L + 1 + 3R]`` for head selection
    (``L`` the width of the batch's ``seq:<text>``), ``[B, C]`` / ``[B]`` for row-level tasks.

    Args:
        input_spec: the encoded features; JMT reads only the text feature(s) (``seq:<text>``, and
            ``ngrams:<text>`` when the preprocessor made character n-grams).
        tasks: bottom to top; one BiLSTM level each.
        text: the text feature; by default the only sequence feature besides ``pair``.
        pair: a second text feature with the same vocabulary (sentence-pair tasks): both
            sentences run through the same stack; token-level tasks label ``text``.
        dim: word embedding width.
        ngram_dim: character n-gram embedding width (default ``dim``).
        char_ngrams: add the mean character n-gram embedding to each word when the spec has
            n-gram ids for the text (``input_spec.ngrams``); False ignores them.
        hidden: LSTM units per direction (token states ``2 * hidden``), and the width of the
            classifiers' hidden and Maxout layers.
        label_dim: width of the label embeddings.
        shortcuts: feed the word representation ``x_t`` to every level (Sec. 2.3).
        label_embeddings: feed the label embeddings of lower tasks upward (Sec. 2.2, 2.5).
        successive: ``delta`` of the successive regularisation (Sec. 2.6; 0 switches it off).
        successive_classifier: ``delta`` for the lower task's classifier parameters.
        dropout: on every level's input and every classifier's input.
        embeddings: a word2vec/GloVe text file of ``dim``-wide vectors for the word table, read
            for the text's vocabulary (``InputSpec.vocabularies``, present while a run is built from
            data; a saved run being loaded has none and skips the file, its weights restored).
        freeze_embeddings: keep the word table fixed (without n-grams nothing shared then trains
            below the first level, and the model declares no shared representation).
        pair_features: per row-level task, ``abs`` (``[|a - b|; a * b]``) or ``signed``
            (``[a - b; a * b]``); defaults: ``abs`` for the first row-level task, ``signed`` after.
        maxout_pieces: affine pieces per Maxout unit.
        zero_init: the paper's initialisation (Sec. 2.7): classifier output layers, ``W_d`` and the
            root vector start at zero. False draws them like the other matrices, so every
            parameter gets a gradient from the first step (the paper's zeros leave the layers
            below a zero output layer without one until that layer moves).
    """

    def __init__(
        self,
        input_spec: InputSpec,
        tasks: Sequence[Task],
        *,
        text: str | None = None,
        pair: str | None = None,
        dim: int = 100,
        ngram_dim: int | None = None,
        char_ngrams: bool = True,
        hidden: int = 100,
        label_dim: int = 100,
        shortcuts: bool = True,
        label_embeddings: bool = True,
        successive: float = 1e-3,
        successive_classifier: float = 1e-2,
        dropout: float = 0.2,
        embeddings: str | None = None,
        freeze_embeddings: bool = False,
        pair_features: dict[str, str] | None = None,
        maxout_pieces: int = 2,
        zero_init: bool = True,
    ) -> None:
        super().__init__(input_spec, tasks)
        for key, value in (("dim", dim), ("hidden", hidden), ("label_dim", label_dim), ("maxout_pieces", maxout_pieces)):
            if value < 1:
                raise ValueError(f"{key} must be >= 1, got {value!r}")
        if successive < 0 or successive_classifier < 0:
            raise ValueError("successive and successive_classifier must be >= 0")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.text, self.pair = self._text_features(input_spec, text, pair)
        self.position_feature = self.text
        for t in self.tasks:
            if t.level == "token" and t.spec.token_feature not in (None, self.text):
                raise ValueError(f"task {t.name!r} labels the tokens of {t.spec.token_feature!r} but jmt's text is {self.text!r}")
        self.hidden, self.label_dim = hidden, label_dim
        self.shortcuts, self.use_labels = shortcuts, label_embeddings
        self.successive, self.successive_classifier = successive, successive_classifier

        # -- word representation (Sec. 2.1) ---------------------------------------------------------
        self.ngram_features = [f for f in (self.text, self.pair) if f is not None and char_ngrams and f in input_spec.ngrams]
        ngram_vocab = max((input_spec.ngrams[f] for f in self.ngram_features), default=0)
        vocabulary = input_spec.vocabularies.get(self.text)
        if self.pair is not None:
            other = input_spec.vocabularies.get(self.pair)
            if vocabulary is not None and other is not None and list(vocabulary) != list(other):
                raise ValueError(f"pair {self.pair!r} has a vocabulary of its own; both sentences run through one word "
                                 f"table, so declare it with vocabulary: {self.text}")
        vocab = max(input_spec.sequences[f] for f in (self.text, self.pair) if f is not None)
        vectors, self.vectors_found = None, 0
        if embeddings is not None and vocabulary is not None:  # a saved run being loaded has no vocabulary
            from polytask.encoders.word_vectors import read_word_vectors

            if len(vocabulary) + 2 != vocab:
                raise ValueError(f"text {self.text!r} has {vocab} word ids but its vocabulary lists {len(vocabulary)} words "
                                 "(+2 for padding and unknown)")
            vectors, self.vectors_found = read_word_vectors(embeddings, list(vocabulary), dim)
        self.words = WordRepresentation(vocab, dim, ngram_vocab=ngram_vocab, ngram_dim=ngram_dim, vectors=vectors,
                                        freeze=freeze_embeddings)
        if not any(p.requires_grad for p in self.words.parameters()):
            self.has_shared_representation = False  # a frozen table alone: x_t carries no gradient
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        x_dim = self.words.out_dim
        state = 2 * hidden

        # -- one level per task, bottom to top --------------------------------------------------
        rows = [t.name for t in self.tasks if t.level != "token"]
        modes = dict(pair_features or {})
        for name, mode in modes.items():
            if name not in rows:
                raise ValueError(f"pair_features names {name!r}, not a row-level task (row-level tasks: {', '.join(rows) or 'none'})")
            if mode not in PAIR_MODES:
                raise ValueError(f"pair_features.{name} must be one of {', '.join(PAIR_MODES)}; got {mode!r}")
        self.pair_modes = {name: modes.get(name, "abs" if i == 0 else "signed") for i, name in enumerate(rows)}
        self.levels = nn.ModuleList()
        self.heads = nn.ModuleDict()
        self.labels = nn.ModuleDict()
        #: per level: does its input hold the sum of label embeddings from below?
        self.reads_labels: list[bool] = []
        #: per row-level task: does its feature vector hold the previous row task's label embedding?
        self.reads_row_label: dict[str, bool] = {}
        self.level_inputs: list[int] = []
        token_labels_below = False
        row_label_width = 0
        last = len(self.tasks) - 1
        for k, task in enumerate(self.tasks):
            reads = k > 0 and self.use_labels and token_labels_below
            in_dim = x_dim if k == 0 else state + (x_dim if shortcuts else 0) + (label_dim if reads else 0)
            self.reads_labels.append(reads)
            self.level_inputs.append(in_dim)
            lstm = nn.LSTM(in_dim, hidden, batch_first=True, bidirectional=True)
            init_lstm_(lstm)
            self.levels.append(lstm)
            if task.level == "token" and is_head_selection(task):
                self.heads[task.name] = HeadSelection(state, relation_count(task), zero_init=zero_init)
            elif task.level == "token":
                self.heads[task.name] = TokenClassifier(state, hidden, task.output_dim, dropout=dropout, zero_init=zero_init)
                if self.use_labels and k < last:  # only a level above reads it
                    self.labels[task.name] = LabelEmbedding(task.output_dim, label_dim)
                    token_labels_below = True
            else:
                first = rows.index(task.name) == 0
                features = (2 * state if self.pair else state) + row_label_width
                self.reads_row_label[task.name] = row_label_width > 0
                self.heads[task.name] = RowHead(features, hidden, task.output_dim, layers=1 if first else 3,
                                                pieces=maxout_pieces, dropout=dropout, zero_init=zero_init)
                later_rows = rows.index(task.name) < len(rows) - 1
                vector = not task.spec.scalar_output and task.output_dim > 1
                row_label_width = 0
                if self.use_labels and later_rows and vector:
                    self.labels[task.name] = LabelEmbedding(task.output_dim, label_dim)
                    row_label_width = label_dim
        self._snapshot: list[tuple[nn.Parameter, Tensor, float]] | None = None
        self.active_task: str | None = None

    # -- construction helpers ----------------------------------------------------------------------
    @staticmethod
    def _text_features(spec: InputSpec, text: str | None, pair: str | None) -> tuple[str, str | None]:
        known = ", ".join(spec.sequences) or "none"
        for key, value in (("text", text), ("pair", pair)):
            if value is not None and value not in spec.sequences:
                raise ValueError(f"{key} {value!r} is not a sequence feature (sequence features: {known})")
        if text is None:
            candidates = [n for n in spec.sequences if n != pair]
            if len(candidates) != 1:
                raise ValueError(f"jmt needs one text feature (model.text naming it); sequence features: {known}")
            text = candidates[0]
        if pair == text:
            raise ValueError(f"pair must be another text feature than text ({text!r})")
        others = [n for n in spec.sequences if n not in (text, pair)]
        if spec.numeric_dim or spec.cardinalities or spec.dense or others:
            extra = (spec.numeric_names + spec.categorical_names + list(spec.dense) + others) or ["numeric/categorical features"]
            raise ValueError(f"jmt reads only its text features ({text}{', ' + pair if pair else ''}); "
                             f"the input also has {', '.join(extra)}: leave them out of the features")
        return text, pair

    # -- what weightings use ---------------------------------------------------------------------
    def shared_modules(self) -> list[nn.Module]:
        """The word representation and the first level: every task's output is computed from both."""
        return [self.words, self.levels[0]]

    # -- forward -------------------------------------------------------------------------------
    def _inputs(self, features: dict[str, Tensor], with_pair: bool = True) -> tuple[Tensor, Tensor | None, int]:
        """Word ids ``[N, L]`` (and n-gram ids ``[N, L, G]``) of the text, with the pair's sentences
        appended below (``N = 2B``; unless ``with_pair`` is False), padded to a common width; and
        the text's own width."""
        ids = features[f"seq:{self.text}"]
        width = ids.shape[1]
        grams = self._ngrams(features, self.text, ids) if self.ngram_features else None
        if self.pair is None or not with_pair:
            return ids, grams, width
        ids_b = features[f"seq:{self.pair}"]
        length = max(width, ids_b.shape[1])
        all_ids = torch.cat([F.pad(ids, (0, length - width)), F.pad(ids_b, (0, length - ids_b.shape[1]))])
        if grams is None:
            return all_ids, None, width
        grams_b = self._ngrams(features, self.pair, ids_b)
        g = max(grams.shape[2], grams_b.shape[2])
        grams = torch.cat([F.pad(grams, (0, g - grams.shape[2], 0, length - width)),
                           F.pad(grams_b, (0, g - grams_b.shape[2], 0, length - ids_b.shape[1]))])
        return all_ids, grams, width

    def _ngrams(self, features: dict[str, Tensor], name: str, ids: Tensor) -> Tensor:
        """``ngrams:<name>``, or no n-gram ids (``G = 0``) for a text the preprocessor gave none."""
        if name in self.ngram_features:
            return features[f"ngrams:{name}"]
        return ids.new_zeros(*ids.shape, 0)

    def _level(self, k: int, x: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        lstm = self.levels[k]
        if x.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, 2 * self.hidden)
        h = run_packed(lstm, self.dropout(x), lengths)
        return h * mask.unsqueeze(-1).to(h.dtype)

    def _levels_needed(self) -> int:
        """How many levels a forward pass runs: while one task trains (a one-task-at-a-time
        schedule called :meth:`begin_task`), the levels up to it; else all."""
        if self.training and self.active_task is not None:
            return self.task_names.index(self.active_task) + 1
        return len(self.tasks)

    @staticmethod
    def _placeholder(task: Task, b: int, width: int, like: Tensor) -> Tensor:
        """Zeros of ``task``'s output shape for a level a pass does not run (its task is not
        trained on this step: a one-task-at-a-time schedule clears its mask)."""
        if task.level == "token":
            size = task.output_dim - (task.spec.max_len - width) if is_head_selection(task) else task.output_dim
            return like.new_zeros(b, width, size)
        return like.new_zeros(b) if task.spec.scalar_output and task.output_dim == 1 else like.new_zeros(b, task.output_dim)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        stop = self._levels_needed()
        # the second sentence of a pair only matters to the row-level tasks among the levels run
        with_pair = any(t.level != "token" for t in self.tasks[:stop])
        ids, grams, width = self._inputs(features, with_pair)
        b = features[f"seq:{self.text}"].shape[0]
        lengths, mask = valid_positions(ids)
        x = self.share(self.words(ids, grams))  # [N, L, x_dim]
        out: dict[str, Tensor] = {}
        below: Tensor | None = None  # the last level's token states
        labels: Tensor | None = None  # sum of the token label embeddings so far
        row_label: Tensor | None = None  # label embedding of the last row-level task
        for task in self.tasks[stop:]:
            out[task.name] = self._placeholder(task, b, width, x)
        for k, task in enumerate(self.tasks[:stop]):
            if k == 0:
                level_in = x
            else:
                parts = [below] + ([x] if self.shortcuts else []) + ([labels] if self.reads_labels[k] else [])
                level_in = torch.cat([p.to(x.dtype) for p in parts], dim=-1)
            h = self._level(k, level_in, lengths, mask)
            below = h
            head = self.heads[task.name]
            if task.level == "token":
                own, own_mask = self.dropout(h[:b, :width]), mask[:b, :width]
                if isinstance(head, HeadSelection):
                    out[task.name] = head(own, own_mask)
                    continue
                logits = head(self.dropout(h))  # both sentences: the levels above read their labels
                out[task.name] = logits[:b, :width]
                if task.name in self.labels:
                    y = self.labels[task.name](logits)
                    labels = y if labels is None else labels + y
                continue
            s = masked_max(h, mask)  # [N, 2h]
            f = pair_features(s[:b], s[b:], self.pair_modes[task.name]) if self.pair else s
            if self.reads_row_label[task.name]:
                assert row_label is not None
                f = torch.cat([f, row_label.to(f.dtype)], dim=-1)
            y = head(f)
            row_label = self.labels[task.name](y) if task.name in self.labels else None
            out[task.name] = y.squeeze(-1) if task.spec.scalar_output and task.output_dim == 1 else y
        return {t.name: out[t.name] for t in self.tasks}

    # -- successive regularisation (Sec. 2.6) --------------------------------------------------------
    def lower_parameters(self, name: str) -> list[tuple[nn.Parameter, float]]:
        """``(parameter, delta)`` pairs successive regularisation keeps near their snapshot while
        task ``name`` trains: the word representation below the first task, else the level just
        below (its BiLSTM with ``successive``, its classifier and label embedding with
        ``successive_classifier``)."""
        k = self.task_names.index(name)
        if k == 0:
            pairs = [(p, self.successive) for p in self.words.parameters()]
        else:
            lower = self.task_names[k - 1]
            pairs = [(p, self.successive) for p in self.levels[k - 1].parameters()]
            classifier: Iterable[nn.Parameter] = list(self.heads[lower].parameters())
            if lower in self.labels:
                classifier = [*classifier, *self.labels[lower].parameters()]
            pairs += [(p, self.successive_classifier) for p in classifier]
        return [(p, d) for p, d in pairs if p.requires_grad and d > 0]

    def begin_task(self, name: str | None) -> None:
        """Snapshot ``theta'`` of the parameters below task ``name`` (see :meth:`lower_parameters`);
        None ends the one-task-at-a-time phase (no term)."""
        if name is not None and name not in self.task_names:
            raise ValueError(f"begin_task: unknown task {name!r} (tasks: {', '.join(self.task_names)})")
        self.active_task = name
        if name is None or self.successive == 0:
            self._snapshot = None
            return
        self._snapshot = [(p, p.detach().clone(), d) for p, d in self.lower_parameters(name)]

    def regularization(self) -> dict[str, Tensor]:
        """``{"successive": sum delta * ||theta - theta'||^2}`` while a task is active; else empty."""
        if not self._snapshot:
            return {}
        total = sum(d * (p - ref.to(p.device)).pow(2).sum() for p, ref, d in self._snapshot)
        return {"successive": total}  # type: ignore[dict-item]
