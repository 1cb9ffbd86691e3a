"""JMT (Hashimoto et al., EMNLP 2017): level widths under the shortcut and label-embedding switches,
output shapes for every kind combination, the paper's initialisation, gradients, successive
regularisation, and learning a tiny generated text problem (tags, left-neighbour heads, a
sentence-pair relatedness score)."""

from __future__ import annotations

import math

import pytest
import torch

from polytask.data.schema import InputSpec
from polytask.data.table import TensorTable
from polytask.models import create_model
from polytask.models.jmt import JMT
from polytask.nn.head_selection import HeadSelection
from polytask.tasks import Task

WIDTH = 6
SPEC = InputSpec(sequences={"a": 22, "b": 22})
ONE_TEXT = InputSpec(sequences={"a": 22})
NGRAM_SPEC = InputSpec(sequences={"a": 22, "b": 22}, ngrams={"a": 30, "b": 30})
SMALL = {"text": "a", "dim": 8, "hidden": 6, "label_dim": 4, "dropout": 0.0}


def pos(c: int = 5) -> Task:
    return Task("pos", "tagging", tokens="a", num_classes=c, max_len=WIDTH)


def chk(c: int = 4) -> Task:
    return Task("chk", "tagging", tokens="a", num_classes=c, max_len=WIDTH)


def dep(relations: bool = True) -> Task:
    if relations:
        return Task("dep", "dependency", tokens="a", relations="rel", classes=["root", "x", "y"], max_len=WIDTH)
    return Task("dep", "dependency", tokens="a", max_len=WIDTH)


def rel() -> Task:
    return Task("rel", "relatedness")


def ent() -> Task:
    return Task("ent", "multiclass", num_classes=3)


def paper_tasks() -> list[Task]:
    return [pos(), chk(), dep(), rel(), ent()]


def features(b: int, *, seed: int = 0, ngrams: bool = False, lengths_a=(4, 6, 1, 0), lengths_b=(3, 5, 0, 2)) -> dict:
    """Left-aligned ids of ``a`` (WIDTH wide) and ``b`` (5 wide); the 4th example of ``a`` has no tokens."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, width, lengths in (("a", WIDTH, lengths_a), ("b", 5, lengths_b)):
        ids = torch.randint(2, 22, (b, width), generator=g)
        n = torch.tensor([lengths[i % len(lengths)] for i in range(b)])
        ids[torch.arange(width).unsqueeze(0) >= n.unsqueeze(1)] = 0
        out[f"seq:{name}"] = ids
        if ngrams:
            grams = torch.randint(1, 30, (b, width, 3), generator=g)
            grams[ids == 0] = 0
            out[f"ngrams:{name}"] = grams
    return out


def labels(tasks: list[Task], feats: dict, *, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    ids = feats["seq:a"]
    b, length = ids.shape
    n = (ids > 0).sum(1)
    lab, mask = {}, {}
    for t in tasks:
        if t.kind == "tagging":
            lab[t.name], mask[t.name] = torch.randint(0, t.output_dim, ids.shape, generator=g), ids > 0
        elif t.kind == "dependency":
            heads = torch.stack([torch.randint(0, int(k) + 1, (length,), generator=g) for k in n])
            heads = torch.where(heads == torch.arange(1, length + 1), 0, heads)  # never the token itself
            relation = torch.randint(0, max(t.spec.num_relations, 1), ids.shape, generator=g)
            lab[t.name], mask[t.name] = heads + (t.spec.max_len + 1) * relation, ids > 0
        elif t.kind == "relatedness":
            lab[t.name], mask[t.name] = 1 + 4 * torch.rand(b, generator=g), torch.ones(b, dtype=torch.bool)
        elif t.kind == "multiclass":
            lab[t.name], mask[t.name] = torch.randint(0, t.output_dim, (b,), generator=g), torch.ones(b, dtype=torch.bool)
        elif t.kind == "binary":
            lab[t.name], mask[t.name] = torch.randint(0, 2, (b,), generator=g).float(), torch.ones(b, dtype=torch.bool)
        else:
            lab[t.name], mask[t.name] = torch.randn(b, generator=g), torch.ones(b, dtype=torch.bool)
    return lab, mask


def total_loss(model: JMT, tasks: list[Task], feats: dict, lab: dict, mask: dict) -> torch.Tensor:
    out = model(feats)
    loss = sum(t.loss(out[t.name], lab[t.name], mask[t.name]) for t in tasks)
    return loss + sum(model.regularization().values(), torch.zeros(()))


# -- structure ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("shortcuts, label_embeddings, widths", [
    (True, True, [8, 12 + 8 + 4, 24, 24, 24]),   # [h^(k-1); x_t; y^pos + y^chk]
    (False, True, [8, 12 + 4, 16, 16, 16]),       # no shortcut: x_t only at level 1
    (True, False, [8, 12 + 8, 20, 20, 20]),       # no label embeddings
    (False, False, [8, 12, 12, 12, 12]),
])
def test_level_input_widths_follow_the_switches(shortcuts, label_embeddings, widths):
    model = create_model("jmt", SPEC, paper_tasks(), {**SMALL, "pair": "b", "shortcuts": shortcuts,
                                                        "label_embeddings": label_embeddings})
    assert model.level_inputs == widths
    assert [lstm.weight_ih_l0.shape[1] for lstm in model.levels] == widths
    assert all(lstm.hidden_size == 6 and lstm.bidirectional for lstm in model.levels)
    # label embeddings: pos and chk feed upward (dep none); rel's feeds ent's features
    assert set(model.labels) == ({"pos", "chk", "rel"} if label_embeddings else set())
    # relatedness: [|a-b|; a*b] and one Maxout layer; entailment: [a-b; a*b] (+ rel's label embedding) and 3
    assert model.pair_modes == {"rel": "abs", "ent": "signed"}
    assert len(model.heads["rel"].maxouts) == 1 and len(model.heads["ent"].maxouts) == 3
    assert model.heads["rel"].maxouts[0].linear.in_features == 2 * 12
    assert model.heads["ent"].maxouts[0].linear.in_features == 2 * 12 + (4 if label_embeddings else 0)
    assert isinstance(model.heads["dep"], HeadSelection) and model.heads["dep"].relations == 3


def test_char_ngrams_widen_the_word_representation_and_can_be_switched_off():
    model = create_model("jmt", NGRAM_SPEC, [pos(), chk()], {**SMALL, "pair": "b", "ngram_dim": 5})
    assert model.words.out_dim == 13 and model.level_inputs == [13, 12 + 13 + 4]
    off = create_model("jmt", NGRAM_SPEC, [pos(), chk()], {**SMALL, "pair": "b", "char_ngrams": False})
    assert off.words.out_dim == 8 and off.words.ngrams is None
    out = model(features(3, ngrams=True))
    assert out["pos"].shape == (3, WIDTH, 5)


def test_pair_features_override_and_refusals():
    model = create_model("jmt", SPEC, [rel(), ent()], {**SMALL, "pair": "b", "pair_features": {"rel": "signed", "ent": "abs"}})
    assert model.pair_modes == {"rel": "signed", "ent": "abs"}
    from polytask.errors import ConfigError

    with pytest.raises(ConfigError, match="not a row-level task"):
        create_model("jmt", SPEC, [pos(), rel()], {**SMALL, "pair": "b", "pair_features": {"pos": "abs"}})
    with pytest.raises(ConfigError, match="abs, signed"):
        create_model("jmt", SPEC, [rel()], {**SMALL, "pair": "b", "pair_features": {"rel": "cosine"}})
    with pytest.raises(ConfigError, match="reads only its text"):
        create_model("jmt", InputSpec(numeric_dim=2, sequences={"a": 5}), [pos()], {"text": "a"})
    with pytest.raises(ConfigError, match="one text feature"):
        create_model("jmt", SPEC, [pos()], {})
    with pytest.raises(ConfigError, match="also has b"):
        create_model("jmt", SPEC, [pos()], {"text": "a"})


# -- outputs -----------------------------------------------------------------------------------------
COMBINATIONS = {
    "paper": lambda: paper_tasks(),
    "tagging": lambda: [pos()],
    "dependency": lambda: [dep()],
    "dependency-heads-only": lambda: [dep(relations=False)],
    "relatedness": lambda: [rel()],
    "regression": lambda: [Task("score", "regression")],
    "binary-over-tags": lambda: [pos(), Task("y", "binary")],
    "dependency-then-tagging": lambda: [dep(), pos()],
    "rows-then-tokens": lambda: [rel(), ent(), chk(), dep()],
    "no-dependency": lambda: [pos(), chk(), rel(), ent()],
}


@pytest.mark.parametrize("pair", [None, "b"])
@pytest.mark.parametrize("combo", list(COMBINATIONS))
@pytest.mark.parametrize("batch_size", [1, 4])
def test_output_shapes_for_every_kind_combination(combo, pair, batch_size):
    torch.manual_seed(0)
    tasks = COMBINATIONS[combo]()
    model = create_model("jmt", SPEC if pair else ONE_TEXT, tasks, {**SMALL, "pair": pair})
    feats = features(batch_size)
    out = model(feats)
    assert set(out) == {t.name for t in tasks}
    for t in tasks:
        if t.kind == "dependency":
            r = t.spec.num_relations
            expected: tuple[int, ...] = (batch_size, WIDTH, WIDTH + 1 + 3 * r)
        elif t.level == "token":
            expected = (batch_size, WIDTH, t.output_dim)
        elif t.spec.scalar_output and t.output_dim == 1:
            expected = (batch_size,)
        else:
            expected = (batch_size, t.output_dim)
        assert tuple(out[t.name].shape) == expected, (combo, t.name)
        assert torch.isfinite(out[t.name]).all(), (combo, t.name)
    lab, mask = labels(tasks, feats)
    loss = total_loss(model, tasks, feats, lab, mask)
    assert torch.isfinite(loss)
    loss.backward()


def test_a_batch_width_below_max_len_and_no_tokens_at_all():
    model = create_model("jmt", SPEC, [pos(), dep(), rel()], {**SMALL, "pair": "b"})
    feats = {"seq:a": torch.tensor([[3, 4, 0], [0, 0, 0]]), "seq:b": torch.zeros(2, 0, dtype=torch.long)}
    out = model(feats)
    assert out["pos"].shape == (2, 3, 5) and out["dep"].shape == (2, 3, 4 + 9) and out["rel"].shape == (2, 5)
    empty = {"seq:a": torch.zeros(2, 0, dtype=torch.long), "seq:b": torch.zeros(2, 0, dtype=torch.long)}
    out = model(empty)
    assert out["pos"].shape == (2, 0, 5) and out["dep"].shape == (2, 0, 1 + 9) and out["rel"].shape == (2, 5)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_padding_changes_nothing():
    torch.manual_seed(0)
    model = create_model("jmt", SPEC, paper_tasks(), {**SMALL, "pair": "b"}).eval()
    feats = features(3)
    wider = {k: torch.nn.functional.pad(v, (0, 3)) for k, v in feats.items()}
    a, b = model(feats), model(wider)
    for name in ("pos", "chk"):
        torch.testing.assert_close(a[name], b[name][:, :WIDTH])
    torch.testing.assert_close(a["rel"], b["rel"])
    torch.testing.assert_close(a["ent"], b["ent"])
    # head scores over the real candidates and the relation parts are unchanged
    torch.testing.assert_close(a["dep"][..., : WIDTH + 1], b["dep"][:, :WIDTH, : WIDTH + 1])
    torch.testing.assert_close(a["dep"][..., WIDTH + 1 :], b["dep"][:, :WIDTH, WIDTH + 4 :])


# -- initialisation and gradients ------------------------------------------------------------------------
def test_paper_initialisation():
    torch.manual_seed(0)
    model = create_model("jmt", SPEC, paper_tasks(), {**SMALL, "pair": "b"})
    h = 6
    for lstm in model.levels:
        for name, p in lstm.named_parameters():
            if name.startswith("weight"):
                bound = math.sqrt(6 / (p.shape[0] + p.shape[1]))
                assert p.abs().max() <= bound and p.abs().max() > 0.8 * bound, name
        for suffix in ("l0", "l0_reverse"):
            total = getattr(lstm, f"bias_ih_{suffix}") + getattr(lstm, f"bias_hh_{suffix}")
            assert torch.equal(total[h : 2 * h], torch.ones(h))  # forget gate 1
            assert total[:h].abs().sum() == 0 and total[2 * h :].abs().sum() == 0
    for name in ("pos", "chk"):
        assert model.heads[name].out.weight.abs().sum() == 0 and model.heads[name].out.bias.abs().sum() == 0
        c = model.heads[name].out.out_features
        assert model.labels[name].weight.abs().max() <= math.sqrt(6 / (4 + c))
    assert all(p.abs().sum() == 0 for p in model.heads["dep"].parameters())  # W_d, r, relation classifier
    for name in ("rel", "ent"):
        assert model.heads[name].out.weight.abs().sum() == 0


def test_gradients_reach_every_parameter():
    """From the first step with ``zero_init: False``; with the paper's zeros, after the output
    layers have moved (a zero output layer passes no gradient below it at first)."""
    tasks = paper_tasks()
    feats = features(4, ngrams=True)
    lab, mask = labels(tasks, feats)

    def check(model):
        model.zero_grad()
        total_loss(model, tasks, feats, lab, mask).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, f"zero gradient at {name}"

    torch.manual_seed(0)
    check(create_model("jmt", NGRAM_SPEC, tasks, {**SMALL, "pair": "b", "zero_init": False}))
    torch.manual_seed(0)
    model = create_model("jmt", NGRAM_SPEC, tasks, {**SMALL, "pair": "b"})
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        total_loss(model, tasks, feats, lab, mask).backward()
        opt.step()
    check(model)


def test_shared_modules_and_representation():
    torch.manual_seed(0)
    tasks = paper_tasks()
    model = create_model("jmt", SPEC, tasks, {**SMALL, "pair": "b", "zero_init": False})
    shared = {id(p) for p in model.shared_parameters()}
    assert {id(p) for p in model.words.parameters()} <= shared
    model.capture_representation = True
    out = model(features(3))
    rep = model.representation
    assert rep is not None and rep.shape[0] == 6  # both sentences of every pair
    for t in tasks:
        (g,) = torch.autograd.grad(out[t.name].sum(), rep, retain_graph=True)
        assert g.abs().sum() > 0, t.name


# -- successive regularisation (Sec. 2.6) -----------------------------------------------------------------
def test_successive_regularisation_is_zero_after_the_snapshot_and_grows_with_the_distance():
    torch.manual_seed(0)
    model = create_model("jmt", SPEC, paper_tasks(), {**SMALL, "pair": "b", "successive": 1e-3, "successive_classifier": 1e-2})
    assert model.regularization() == {}  # never called
    model.begin_task("chk")
    term = model.regularization()["successive"]
    assert term.item() == 0.0 and term.requires_grad
    lstm = model.levels[0]  # the level below chk
    with torch.no_grad():
        lstm.weight_ih_l0.add_(0.1)
    first = model.regularization()["successive"].item()
    assert first == pytest.approx(1e-3 * 0.01 * lstm.weight_ih_l0.numel(), rel=1e-4)
    with torch.no_grad():
        lstm.weight_ih_l0.add_(0.1)
    assert model.regularization()["successive"].item() == pytest.approx(4 * first, rel=1e-4)
    # the classifier of the level below with delta_c
    with torch.no_grad():
        lstm.weight_ih_l0.sub_(0.2)
        model.heads["pos"].out.bias.add_(0.5)
    assert model.regularization()["successive"].item() == pytest.approx(1e-2 * 0.25 * 5, rel=1e-4)
    # chk's own parameters and the levels above are free
    with torch.no_grad():
        model.levels[1].weight_ih_l0.add_(1.0)
        model.heads["chk"].out.bias.add_(1.0)
    assert model.regularization()["successive"].item() == pytest.approx(1e-2 * 0.25 * 5, rel=1e-4)
    # its gradient pulls back towards the snapshot
    model.zero_grad()
    model.regularization()["successive"].backward()
    assert (model.heads["pos"].out.bias.grad > 0).all()
    # a new snapshot resets the reference; None ends the term
    model.begin_task("chk")
    assert model.regularization()["successive"].item() == 0.0
    model.begin_task(None)
    assert model.regularization() == {}


def test_the_first_task_keeps_the_word_representation_near_its_snapshot():
    model = create_model("jmt", ONE_TEXT, [pos(), chk()], {**SMALL, "successive": 0.5})
    model.begin_task("pos")
    with torch.no_grad():
        model.words.weight[3].add_(1.0)
    assert model.regularization()["successive"].item() == pytest.approx(0.5 * 8)


def test_successive_zero_switches_it_off_and_unknown_tasks_are_refused():
    model = create_model("jmt", ONE_TEXT, [pos(), chk()], {**SMALL, "successive": 0.0})
    model.begin_task("chk")
    with torch.no_grad():
        model.levels[0].weight_ih_l0.add_(1.0)
    assert model.regularization() == {}
    with pytest.raises(ValueError, match="unknown task"):
        model.begin_task("nope")


# -- learning ----------------------------------------------------------------------------------------------
def make_problem(n: int, seed: int, width: int = 8) -> TensorTable:
    """Sentences of 3..8 words out of 20 (ids 2..21). ``pos``: the word's class, ``(id - 2) % 4``;
    ``dep``: every token's head is its left neighbour (the first token's the root), relation 0 for
    the root, else 1 + the head word's class parity; ``rel``: a relatedness score, 1 + the number of
    word classes both sentences of the pair use (1..5)."""
    g = torch.Generator().manual_seed(seed)

    def sentences():
        ids = torch.randint(2, 22, (n, width), generator=g)
        lengths = torch.randint(3, width + 1, (n,), generator=g)
        mask = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
        return ids * mask, mask

    a, mask_a = sentences()
    b, mask_b = sentences()
    cls = (a - 2) % 4
    heads = torch.arange(width).expand(n, width)  # token t (1-based t+1) -> head t
    head_class = torch.cat([torch.zeros(n, 1, dtype=torch.long), cls[:, :-1]], 1)
    relation = torch.where(heads == 0, 0, 1 + head_class % 2)
    present_a = torch.stack([((cls == c) & mask_a).any(1) for c in range(4)], 1)
    present_b = torch.stack([(((b - 2) % 4 == c) & mask_b).any(1) for c in range(4)], 1)
    score = 1 + (present_a & present_b).sum(1).float()
    return TensorTable({"seq:a": a, "seq:b": b},
                       {"pos": cls, "dep": heads + (width + 1) * relation, "rel": score},
                       {"pos": mask_a, "dep": mask_a, "rel": torch.ones(n, dtype=torch.bool)})


def test_learns_tags_left_neighbour_heads_and_a_pair_score():
    from polytask.train.trainer import Trainer

    width = 8
    tasks = [Task("pos", "tagging", tokens="a", num_classes=4, max_len=width),
             Task("dep", "dependency", tokens="a", relations="rel", classes=["root", "even", "odd"], max_len=width),
             Task("rel", "relatedness")]
    spec = InputSpec(sequences={"a": 22, "b": 22})
    torch.manual_seed(0)
    model = create_model("jmt", spec, tasks, {"text": "a", "pair": "b", "dim": 24, "hidden": 24, "label_dim": 8,
                                               "dropout": 0.0})
    train, test = make_problem(800, 0), make_problem(300, 1)
    trainer = Trainer(model, tasks, epochs=6, batch_size=32, optimizer="adam", lr=0.01, device="cpu",
                      progress=False, log_every=None, seed=0, patience=None)
    trainer.fit(train)  # 6 epochs x 25 steps = 150 steps
    model.eval()
    with torch.no_grad():
        out = model(test.features)
    got = {t.name: t.spec.compute_metrics(out[t.name], test.labels[t.name], test.masks[t.name]) for t in tasks}
    print({k: {m: round(v, 3) for m, v in d.items()} for k, d in got.items()})
    assert got["pos"]["token_accuracy"] > 0.95
    assert got["dep"]["uas"] > 0.9 and got["dep"]["las"] > 0.85
    assert got["rel"]["pearson"] > 0.8


def sentence_table(n: int, seed: int, width: int = 8):
    """The problem of :func:`make_problem` as a table: words ``w<i>`` (their class ``i % 4`` as the
    tag ``T<c>``), CoNLL-style heads (left neighbour) and relations, a second sentence and the
    pair's relatedness score."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"words": [], "pos": [], "heads": [], "deprel": [], "words_b": [], "score": []}
    for _ in range(n):
        a = rng.integers(0, 20, rng.integers(3, width + 1))
        b = rng.integers(0, 20, rng.integers(3, width + 1))
        rows["words"].append(" ".join(f"w{i}" for i in a))
        rows["words_b"].append(" ".join(f"w{i}" for i in b))
        rows["pos"].append(" ".join(f"T{i % 4}" for i in a))
        rows["heads"].append(" ".join(str(t) for t in range(len(a))))
        rows["deprel"].append(" ".join(["root"] + [("even", "odd")[int(i % 4) % 2] for i in a[:-1]]))
        rows["score"].append(1.0 + len({int(i) % 4 for i in a} & {int(i) % 4 for i in b}))
    return pa.table(rows)


def test_fit_trains_jmt_from_a_table_with_char_ngrams_and_a_shared_vocabulary():
    """The whole path: the preprocessor's char n-grams and shared pair vocabulary, the dependency
    and relatedness kinds, and the jmt schedule (one task at a time, successive regularisation)."""
    import polytask

    train, valid = sentence_table(500, 0), sentence_table(200, 1)
    run = polytask.fit(
        train=train, validation=valid,
        features={"sequence": [{"name": "words", "separator": " ", "max_len": 8, "char_ngrams": [2, 3]},
                               {"name": "words_b", "separator": " ", "max_len": 8, "char_ngrams": [2, 3], "vocabulary": "words"}]},
        tasks=[{"name": "pos", "kind": "tagging", "tokens": "words"},
               {"name": "dep", "kind": "dependency", "label": "heads", "tokens": "words", "relations": "deprel"},
               {"name": "score", "kind": "relatedness"}],
        model={"name": "jmt", "text": "words", "pair": "words_b", "dim": 24, "hidden": 24, "label_dim": 8, "dropout": 0.0},
        schedule="jmt", epochs=4, batch_size=32, progress=False, seed=0, device="cpu",
        optimizer={"name": "adam", "lr": 0.01},
    )
    assert run.model.ngram_features == ["words", "words_b"]
    val = run.metrics["validation"]
    print({k: {m: round(v, 3) for m, v in d.items() if isinstance(v, float)} for k, d in val.items() if isinstance(d, dict)})
    assert val["pos"]["token_accuracy"] > 0.95
    assert val["dep"]["uas"] > 0.9
    assert val["score"]["pearson"] > 0.7


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_runs_under_bf16_autocast(device):
    torch.manual_seed(0)
    tasks = paper_tasks()
    model = create_model("jmt", NGRAM_SPEC, tasks, {**SMALL, "pair": "b", "zero_init": False}).to(device)
    feats = {k: v.to(device) for k, v in features(4, ngrams=True).items()}
    lab, mask = labels(tasks, features(4, ngrams=True))
    lab, mask = {k: v.to(device) for k, v in lab.items()}, {k: v.to(device) for k, v in mask.items()}
    model.begin_task("dep")
    with torch.autocast(device, dtype=torch.bfloat16):
        loss = total_loss(model, tasks, feats, lab, mask)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_pretrained_vectors_fill_the_word_table(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("cat 1 2 3 4\ndog 5 6 7 8\n")
    spec = InputSpec(sequences={"a": 5, "b": 5}, vocabularies={"a": ["dog", "cat", "eel"], "b": ["dog", "cat", "eel"]})
    model = create_model("jmt", spec, [pos(), rel()], {**SMALL, "dim": 4, "pair": "b", "embeddings": str(path),
                                                       "freeze_embeddings": True})
    assert model.vectors_found == 2
    torch.testing.assert_close(model.words.weight[2:4], torch.tensor([[5.0, 6, 7, 8], [1.0, 2, 3, 4]]))
    assert not model.words.weight.requires_grad and model.has_shared_representation is False
    other = InputSpec(sequences={"a": 5, "b": 5}, vocabularies={"a": ["dog", "cat", "eel"], "b": ["eel", "cat", "dog"]})
    from polytask.errors import ConfigError

    with pytest.raises(ConfigError, match="vocabulary: a"):
        create_model("jmt", other, [pos(), rel()], {**SMALL, "pair": "b"})


@pytest.mark.parametrize("active", ["pos", "chk", "dep", "rel"])
def test_while_one_task_trains_only_the_levels_up_to_it_run(active):
    """Under a one-task-at-a-time schedule the levels above the trained task are not computed
    (their outputs are zeros: their masks are cleared); the trained task's output is the same as
    in a full pass, and the pair's second sentence is read only when a row-level task is run."""
    torch.manual_seed(0)
    tasks = paper_tasks()
    model = create_model("jmt", SPEC, tasks, {**SMALL, "pair": "b", "zero_init": False})
    feats = features(4)
    model.train()
    full = model(feats)
    model.begin_task(active)
    part = model(feats)
    k = [t.name for t in tasks].index(active)
    assert list(part) == [t.name for t in tasks]
    for t in tasks[: k + 1]:
        assert torch.allclose(part[t.name], full[t.name], atol=1e-6), t.name
    for t in tasks[k + 1:]:
        assert part[t.name].shape == full[t.name].shape and not part[t.name].any(), t.name
    if active != "rel":  # token-level levels only: sentence b is never read
        assert torch.equal(model(feats | {"seq:b": torch.zeros_like(feats["seq:b"])})[active], part[active])
    model.eval()
    assert all(model(feats)[t.name].shape == full[t.name].shape for t in tasks)  # evaluation runs every level
    assert model(feats)["ent"].any()
