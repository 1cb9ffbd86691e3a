"""The ``tokens`` input encoder: row layout and shapes, padding invariance (the BiLSTM's backward
direction and the Transformer's attention never read padding), the sentence row as a masked
pooling of the token rows, the other features on every row, the choice of the text feature and
clear errors for bad settings."""

from __future__ import annotations

import math

import pytest
import torch

from polytask.data.schema import InputSpec
from polytask.encoders import TokenEncoder, make_input
from polytask.encoders.tokens import sinusoidal_positions
from polytask.nn.sequence import valid_positions
from polytask.errors import ConfigError
from polytask.models import create_model
from polytask.tasks import Task

SPEC = InputSpec(numeric_dim=2, sequences={"text": 12}, numeric_names=["a", "b"])
IDS = torch.tensor([[3, 4, 5, 6, 0], [7, 2, 0, 0, 0], [9, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
LENGTHS = [4, 2, 1, 0]

VARIANTS = {
    "lstm": {"kind": "lstm", "dim": 6, "hidden": 5},
    "lstm2": {"kind": "lstm", "dim": 6, "hidden": 3, "layers": 2},
    "transformer": {"kind": "transformer", "dim": 8, "heads": 2},
    "transformer-sin": {"kind": "transformer", "dim": 8, "heads": 2, "layers": 2, "positions": "sinusoidal"},
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def feats(ids: torch.Tensor = IDS, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    if pad_to is not None:
        ids = torch.cat([ids, ids.new_zeros(ids.shape[0], pad_to - ids.shape[1])], dim=1)
    g = torch.Generator().manual_seed(1)
    return {"seq:text": ids, "numeric": torch.randn(ids.shape[0], 2, generator=g)}


def rows(enc: TokenEncoder, f: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B, L + 1, out_dim]`` view of the encoder's rows."""
    b, length = f["seq:text"].shape
    out = enc(f)
    assert out.shape == (b * (length + 1), enc.out_dim)
    return out.reshape(b, length + 1, enc.out_dim)


# -- layout ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_rows_layout_and_widths(variant):
    params = VARIANTS[variant]
    enc = TokenEncoder(SPEC, **params)
    token_dim = 2 * params["hidden"] if params["kind"] == "lstm" else params["dim"]
    assert enc.token_dim == token_dim and enc.out_dim == token_dim + 2
    assert enc.position_feature == "text"
    r = rows(enc, feats())
    assert torch.isfinite(r).all()
    for i, n in enumerate(LENGTHS):
        assert r[i, 1 + n:, :token_dim].abs().sum() == 0, "token vectors at padded positions are zero"
        assert (r[i, 1:1 + n, :token_dim].abs().sum(1) > 0).all()
    # the other features (here the numeric values) follow on every row of their example
    torch.testing.assert_close(r[:, :, token_dim:], feats()["numeric"].unsqueeze(1).expand(4, 6, 2))


def test_lstm_hidden_defaults_to_half_of_dim():
    assert TokenEncoder(SPEC, dim=10).token_dim == 10
    assert TokenEncoder(SPEC, dim=1).token_dim == 2


def test_token_lengths_are_the_prefix_up_to_the_last_real_id():
    assert valid_positions(IDS)[0].tolist() == LENGTHS
    lengths, mask = valid_positions(torch.tensor([[3, 0, 4, 0]]))
    assert lengths.tolist() == [3] and mask.tolist() == [[True, True, True, False]]  # an inner 0 is a (zero) token
    assert valid_positions(torch.zeros(2, 0, dtype=torch.long))[0].tolist() == [0, 0]


# -- padding -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("pool", ["mean", "max", "first"])
def test_extra_padding_changes_no_real_row(variant, pool):
    """Wider padding, and the other examples of the batch, change no sentence row and no real
    token row. (An unpacked BiLSTM's backward direction, or attention without the key-padding
    mask, would read the padding and fail this.)"""
    enc = TokenEncoder(SPEC, pool=pool, **VARIANTS[variant]).eval()
    with torch.no_grad():
        a, b = rows(enc, feats()), rows(enc, feats(pad_to=9))
        for i, n in enumerate(LENGTHS):
            torch.testing.assert_close(b[i, : n + 1], a[i, : n + 1])
            assert b[i, n + 1:, : enc.token_dim].abs().sum() == 0
            if n:  # each example alone, without any padding
                alone = {k: v[i : i + 1] for k, v in feats().items()}
                alone["seq:text"] = alone["seq:text"][:, :n]
                torch.testing.assert_close(rows(enc, alone)[0], a[i, : n + 1], atol=1e-6, rtol=1e-5)


def test_bilstm_backward_direction_reads_the_sentence_from_its_last_real_token():
    """Known answer: the backward half of token 1's vector is an LSTM run over the example's real
    tokens reversed (computed here with the encoder's own reverse-direction weights)."""
    enc = TokenEncoder(SPEC, dim=6, hidden=4).eval()
    lstm = enc.context
    rev = torch.nn.LSTM(6, 4, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(rev, name).copy_(getattr(lstm, name + "_reverse"))
        r = rows(enc, feats(pad_to=7))
        words = enc.words(IDS[0, :4]).flip(0).unsqueeze(0)
        expected = rev(words)[0][0].flip(0)  # backward states at positions 0..3
    torch.testing.assert_close(r[0, 1:5, 4:8], expected)


def test_transformer_key_padding_mask_hides_padding_even_with_positions():
    """Padding ids embed to zero but learned positions make their keys non-zero: only the mask
    keeps them out. With it, changing what sits at padded positions (positions of a longer batch)
    changes nothing; a query's attention over the real keys matches a reference computation."""
    enc = TokenEncoder(SPEC, kind="transformer", dim=8, heads=2, pool="mean").eval()
    layer = enc.context.layers[0]
    with torch.no_grad():
        x = enc.words(IDS[:1]) + enc.position_table.weight[:5]
        y = layer.norm1(x)
        attn, weights = layer.self_attn(y, y, y, key_padding_mask=IDS[:1] == 0, need_weights=True)
        assert weights[0, :, 4].abs().max() == 0  # the padded key gets no weight
        ref = x + attn
        ref = ref + layer.linear2(layer.activation(layer.linear1(layer.norm2(ref))))
        ref = enc.context.norm(ref)
        r = rows(enc, feats(IDS[:1]))
    torch.testing.assert_close(r[0, 1:5, :8], ref[0, :4])


def test_example_without_tokens_is_finite_with_finite_gradients():
    for params in VARIANTS.values():
        for pool in ("mean", "max", "first"):
            enc = TokenEncoder(SPEC, pool=pool, **params)
            f = feats(torch.zeros(2, 3, dtype=torch.long))
            r = rows(enc, f)
            assert torch.isfinite(r).all() and r[:, :, : enc.token_dim].abs().sum() == 0
            rows(enc, feats()).sum().backward()
            assert all(p.grad is None or torch.isfinite(p.grad).all() for p in enc.parameters())


# -- the sentence row ------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["lstm", "lstm2", "transformer"])
def test_sentence_row_is_the_masked_mean_of_the_token_rows(variant):
    enc = TokenEncoder(SPEC, **VARIANTS[variant])
    r = rows(enc, feats(pad_to=7))[:, :, : enc.token_dim]
    for i, n in enumerate(LENGTHS):
        expected = r[i, 1 : 1 + n].mean(0) if n else torch.zeros(enc.token_dim)
        torch.testing.assert_close(r[i, 0], expected)


def test_sentence_row_max_and_first():
    mx = TokenEncoder(SPEC, pool="max", dim=6, hidden=5)
    r = rows(mx, feats(pad_to=7))[:, :, : mx.token_dim]
    for i, n in enumerate(LENGTHS[:3]):  # masked max: padding (zero vectors) never wins
        torch.testing.assert_close(r[i, 0], r[i, 1 : 1 + n].amax(0))
    assert (r[2, 0] < 0).any(), "a one-token example keeps its negative entries (padding is not a 0 candidate)"
    first = TokenEncoder(SPEC, pool="first", dim=6, hidden=5)
    r = rows(first, feats())[:, :, : first.token_dim]
    torch.testing.assert_close(r[:, 0], r[:, 1])


def test_gradients_reach_every_parameter():
    for params in VARIANTS.values():
        enc = TokenEncoder(SPEC, **params)
        rows(enc, feats()).square().sum().backward()
        for name, p in enc.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (params, name)
        assert enc.words.weight.grad[0].abs().sum() == 0, "the padding row gets no gradient"


def test_sinusoidal_positions_known_values():
    pe = sinusoidal_positions(3, 4)
    assert pe.shape == (3, 4)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(pe[2], torch.tensor([math.sin(2), math.cos(2), math.sin(2 / 100), math.cos(2 / 100)]))
    assert sinusoidal_positions(2, 5).shape == (2, 5)


# -- features and settings ---------------------------------------------------------------------------------
def test_other_features_go_through_a_tabular_input():
    spec = InputSpec(numeric_dim=1, cardinalities=[5], sequences={"text": 12, "tags": 4}, dense={"vec": [3]})
    enc = TokenEncoder(spec, feature="text", dim=4, embedding_dim=2)
    assert enc.rest is not None and list(enc.rest.spec.sequences) == ["tags"]
    assert enc.out_dim == 4 + 1 + 2 + 2 + 3
    f = {"seq:text": IDS, "seq:tags": torch.tensor([[1, 2], [3, 0], [0, 0], [2, 2]]), "numeric": torch.randn(4, 1),
         "categorical": torch.randint(0, 5, (4, 1)), "dense:vec": torch.randn(4, 3)}
    out = enc(f).reshape(4, 6, enc.out_dim)
    torch.testing.assert_close(out[:, :, 4:], enc.rest(f).unsqueeze(1).expand(4, 6, 8))
    alone = TokenEncoder(InputSpec(sequences={"text": 9}), dim=4)
    assert alone.rest is None and alone.out_dim == 4


@pytest.mark.parametrize(
    ("spec", "params", "match"),
    [
        (InputSpec(numeric_dim=2), {}, "exactly one sequence feature.*sequence features: none"),
        (InputSpec(sequences={"a": 3, "b": 4}), {}, "exactly one sequence feature.*sequence features: a, b"),
        (SPEC, {"feature": "nope"}, "'nope' is not a sequence feature.*text"),
        (SPEC, {"dim": 0}, "dim must be >= 1"),
        (SPEC, {"layers": 0}, "layers must be >= 1"),
        (SPEC, {"hidden": 0}, "hidden must be >= 1"),
        (SPEC, {"kind": "gru"}, "kind must be one of lstm, transformer"),
        (SPEC, {"pool": "sum"}, "pool must be one of"),
        (SPEC, {"kind": "transformer", "dim": 10, "heads": 4}, r"heads \(4\) must divide dim \(10\)"),
        (SPEC, {"kind": "transformer", "hidden": 8}, "hidden is the LSTM's width"),
        (SPEC, {"dropout": 1.0}, "dropout must be in"),
    ],
)
def test_bad_settings_are_clear_value_errors(spec, params, match):
    with pytest.raises(ValueError, match=match):
        TokenEncoder(spec, **params)


def test_learned_positions_cover_max_len():
    enc = TokenEncoder(SPEC, kind="transformer", dim=4, heads=1, max_len=3)
    with pytest.raises(ValueError, match="max_len=3"):
        enc(feats())
    sin = TokenEncoder(SPEC, kind="transformer", dim=4, heads=1, positions="sinusoidal", max_len=3)
    assert sin.position_table is None and rows(sin, feats()).shape == (4, 6, 6)


def test_settings_are_checked_as_encoder_params():
    enc = make_input(SPEC, "tokens", embedding_dim=3, params={"kind": "transformer", "dim": 4, "heads": 2})
    assert isinstance(enc, TokenEncoder) and enc.out_dim == 4 + 2
    with pytest.raises(ConfigError, match=r"model\.encoder_params\.kind"):
        make_input(SPEC, "tokens", params={"kind": "gru"})
    with pytest.raises(ConfigError, match=r"model\.encoder_params\.heeds: unknown key"):
        make_input(SPEC, "tokens", params={"heeds": 2})


# -- in a model ------------------------------------------------------------------------------------------
def test_row_tasks_read_the_sentence_row():
    tasks = [Task("y", "binary"), Task("c", "multiclass", num_classes=3)]
    model = create_model("shared_bottom", SPEC, tasks, {"encoder": "tokens", "encoder_params": {"dim": 4}})
    assert model.position_feature == "text"
    out = model(feats(pad_to=6))
    assert out["y"].shape == (4,) and out["c"].shape == (4, 3)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(feats())["y"], model(feats(pad_to=8))["y"])


def test_token_tasks_read_the_token_rows():
    tasks = [Task("y", "binary"), Task("tag", "tagging", tokens="text", num_classes=3)]
    model = create_model("mmoe", SPEC, tasks, {"encoder": "tokens", "encoder_params": {"dim": 4}})
    out = model(feats(pad_to=6))
    assert out["y"].shape == (4,) and out["tag"].shape == (4, 6, 3)
    with pytest.raises(ValueError, match="token-level task"):
        create_model("mmoe", SPEC, tasks)


# -- word representation: character n-grams and pretrained vectors --------------------------------------
NGRAM_SPEC = InputSpec(sequences={"text": 12}, ngrams={"text": 9})
NGRAM_IDS = torch.tensor([
    [[2, 3, 0], [4, 0, 0], [5, 6, 7], [1, 0, 0], [0, 0, 0]],
    [[8, 0, 0], [2, 2, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]],
    [[3, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]],
    [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]],
])


def ngram_feats() -> dict[str, torch.Tensor]:
    return {"seq:text": IDS, "ngrams:text": NGRAM_IDS}


def test_char_ngrams_feed_the_word_representation_to_the_context_layer():
    enc = TokenEncoder(NGRAM_SPEC, dim=4, hidden=3, char_ngrams=True, ngram_dim=2)
    assert enc.words.out_dim == 6 and enc.context.input_size == 6
    assert {"words.weight", "words.ngrams.weight"} <= set(enc.state_dict())
    r = enc(ngram_feats()).reshape(4, 6, enc.out_dim)
    assert torch.isfinite(r).all()
    for i, n in enumerate(LENGTHS):
        assert r[i, 1 + n:].abs().sum() == 0
    # the n-grams matter: other n-gram ids give other token vectors
    other = dict(ngram_feats(), **{"ngrams:text": torch.where(NGRAM_IDS > 0, 9 - NGRAM_IDS, 0)})
    assert not torch.allclose(enc(other), enc(ngram_feats()))
    enc(ngram_feats()).square().sum().backward()
    assert enc.words.ngrams.weight.grad[2].abs().sum() > 0 and enc.words.ngrams.weight.grad[0].abs().sum() == 0


def test_char_ngrams_with_the_transformer_widen_its_token_vectors():
    enc = TokenEncoder(NGRAM_SPEC, kind="transformer", dim=4, heads=2, char_ngrams=True)
    assert enc.token_dim == enc.out_dim == 8
    assert rows_of(enc, ngram_feats()).shape == (4, 6, 8)
    with pytest.raises(ValueError, match=r"heads \(3\) must divide the word representation's width 7"):
        TokenEncoder(NGRAM_SPEC, kind="transformer", dim=6, heads=3, char_ngrams=True, ngram_dim=1)


def rows_of(enc: TokenEncoder, f: dict[str, torch.Tensor]) -> torch.Tensor:
    b, length = f["seq:text"].shape
    return enc(f).reshape(b, length + 1, enc.out_dim)


def test_char_ngrams_settings_are_checked():
    with pytest.raises(ValueError, match="char_ngrams needs the character n-grams of feature 'text'.*declare it"):
        TokenEncoder(SPEC, char_ngrams=True)
    with pytest.raises(ValueError, match="ngram_dim .* set char_ngrams: true"):
        TokenEncoder(NGRAM_SPEC, ngram_dim=3)
    with pytest.raises(ValueError, match="freeze_embeddings .* set embeddings"):
        TokenEncoder(SPEC, freeze_embeddings=True)
    with pytest.raises(ConfigError, match=r"model\.encoder_params\.char_ngrams"):
        make_input(SPEC, "tokens", params={"char_ngrams": "maybe"})
    # without char_ngrams the n-gram tensor is not read
    plain = TokenEncoder(NGRAM_SPEC, dim=4)
    assert "words.ngrams.weight" not in plain.state_dict() and rows_of(plain, {"seq:text": IDS}).shape == (4, 6, 4)


def _vocab_spec(words: list[str]) -> InputSpec:
    return InputSpec(sequences={"text": len(words) + 2}, vocabularies={"text": words})


def test_pretrained_vectors_initialise_the_word_table_and_freeze(tmp_path):
    words = ["the", "cat", "sat"]
    path = tmp_path / "vectors.txt"
    path.write_text("2 3\ncat 1 2 3\nThe 4 5 6\n", encoding="utf-8")
    enc = TokenEncoder(_vocab_spec(words), dim=3, embeddings=str(path), freeze_embeddings=True)
    assert enc.vectors_found == 2  # "cat" exactly, "the" by its lower-cased form
    torch.testing.assert_close(enc.words.weight[2], torch.tensor([4.0, 5.0, 6.0]))
    torch.testing.assert_close(enc.words.weight[3], torch.tensor([1.0, 2.0, 3.0]))
    assert enc.words.weight[0].abs().sum() == 0 and not enc.words.weight.requires_grad
    ids = torch.tensor([[2, 3, 4, 0]])
    enc(({"seq:text": ids})).square().sum().backward()
    assert enc.words.weight.grad is None and all(p.grad is not None for n, p in enc.named_parameters() if n != "words.weight")
    trainable = TokenEncoder(_vocab_spec(words), dim=3, embeddings=str(path))
    assert trainable.words.weight.requires_grad
    path.write_text("cat 1 2 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1 holds a 3-dimensional vector but the encoder's word embeddings are 4 wide"):
        TokenEncoder(_vocab_spec(words), dim=4, embeddings=str(path))


def test_a_loaded_run_without_vocabulary_skips_the_file_and_restores_the_weights(tmp_path):
    words = ["the", "cat"]
    path = tmp_path / "vectors.txt"
    path.write_text("cat 1 2\n", encoding="utf-8")
    trained = TokenEncoder(_vocab_spec(words), dim=2, embeddings=str(path))
    # a saved run: the spec has no vocabulary and the file may be gone
    path.unlink()
    loaded = TokenEncoder(InputSpec(sequences={"text": 4}), dim=2, embeddings=str(path))
    assert loaded.vectors_found is None
    loaded.load_state_dict(trained.state_dict())
    torch.testing.assert_close(loaded.words.weight[3], torch.tensor([1.0, 2.0]))


def test_old_state_dict_names_still_load():
    """A run saved before the word representation had ``words.weight`` (an nn.Embedding): the
    names and shapes are unchanged, and the rows it gives are the same."""
    enc = TokenEncoder(SPEC, dim=6, hidden=5)
    state = enc.state_dict()
    assert "words.weight" in state and not any(k.startswith("words.") and k != "words.weight" for k in state)
    torch.manual_seed(0)
    again = TokenEncoder(SPEC, dim=6, hidden=5)
    again.load_state_dict(state)
    torch.testing.assert_close(again(feats()), enc(feats()))
    with torch.no_grad():
        torch.testing.assert_close(enc.words(IDS), torch.nn.functional.embedding(IDS, state["words.weight"]))


# -- sentence pairs ------------------------------------------------------------------------------
def pair_spec() -> InputSpec:
    return InputSpec(sequences={"a": 12, "b": 12})


def test_pair_sentence_row_is_the_pair_features_of_both_sentences():
    torch.manual_seed(0)
    enc = TokenEncoder(pair_spec(), pair="b", dim=6, hidden=3)
    assert enc.feature == "a" and enc.out_dim == 6
    ids_a = torch.tensor([[2, 3, 4, 0], [5, 0, 0, 0]])
    ids_b = torch.tensor([[2, 3, 0], [6, 7, 8]])
    rows = enc({"seq:a": ids_a, "seq:b": ids_b}).reshape(2, 5, 6)
    _, u = enc._encode({"seq:a": ids_a}, "a")
    _, v = enc._encode({"seq:b": ids_b}, "b")
    expected = enc.pair_map(torch.cat([(u - v).abs(), u * v], dim=-1))
    assert torch.allclose(rows[:, 0], expected, atol=1e-6)  # the sentence row
    tokens, _ = enc._encode({"seq:a": ids_a}, "a")
    assert torch.allclose(rows[:, 1:], tokens, atol=1e-6)  # token rows: the first text's
    # the same sentence on both sides: |u - v| = 0
    same = enc({"seq:a": ids_a, "seq:b": ids_a[:, :3]}).reshape(2, 5, 6)[:, 0]
    _, w = enc._encode({"seq:a": ids_a}, "a")
    assert torch.allclose(same, enc.pair_map(torch.cat([torch.zeros_like(w), w * w], dim=-1)), atol=1e-6)


def test_pair_needs_a_shared_vocabulary():
    with pytest.raises(ValueError, match="declare it with vocabulary: a"):
        TokenEncoder(InputSpec(sequences={"a": 12, "b": 9}), pair="b")
    with pytest.raises(ValueError, match="must be another sequence feature"):
        TokenEncoder(pair_spec(), feature="a", pair="a")


def test_a_pair_task_is_learned_through_the_tokens_encoder():
    """Label: is sentence b a copy of sentence a? Hard sharing on the pair's sentence row learns it."""
    import numpy as np
    import pyarrow as pa

    import polytask

    def table(n, seed):
        rng = np.random.default_rng(seed)
        a = [[f"w{i}" for i in rng.integers(0, 12, rng.integers(2, 6))] for _ in range(n)]
        same = rng.integers(0, 2, n)
        b = [x if s else [f"w{i}" for i in rng.integers(0, 12, len(x))] for x, s in zip(a, same)]
        return pa.table({"a": a, "b": b, "same": same})

    def fit():
        return polytask.fit(
            train=table(600, 0), validation=table(200, 1),
            features={"sequence": [{"name": "a", "max_len": 6}, {"name": "b", "max_len": 6, "vocabulary": "a"}]},
            tasks=[{"name": "same"}],
            model={"name": "shared_bottom", "bottom_hidden": [16], "tower_hidden": [], "encoder": "tokens",
                   "encoder_params": {"dim": 16, "pair": "b"}},
            epochs=8, batch_size=32, progress=False, seed=0, device="cpu", optimizer={"name": "adam", "lr": 0.01},
        ).metrics["validation"]["same"]["auc"]

    auc = fit()
    print(f"validation AUC {auc:.3f}")
    assert auc > 0.95
