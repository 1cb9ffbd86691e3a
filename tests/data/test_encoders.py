"""Column encoders: numeric scaling and NaN policy, categorical vocabularies and OOV, sequences
(padding, OOV, truncation), dense shapes. Expected values are computed independently with numpy."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from polytask.data.encoders import OOV, PAD, SEQ_OOV, CategoricalEncoder, DenseEncoder, NumericEncoder, SequenceEncoder
from polytask.data.schema import FeatureSpec
from polytask.errors import DataError


def num(name="x", **kw) -> NumericEncoder:
    return NumericEncoder(FeatureSpec(name, "numeric", **kw))


def cat(name="c", **kw) -> CategoricalEncoder:
    return CategoricalEncoder(FeatureSpec(name, "categorical", **kw))


def seq(name="s", **kw) -> SequenceEncoder:
    return SequenceEncoder(FeatureSpec(name, "sequence", **kw))


# -- numeric ------------------------------------------------------------------------------------
def test_standard_scaling_uses_train_statistics_only():
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 2.0, size=50)
    other = rng.normal(-3.0, 10.0, size=20)
    enc = num().fit(pa.array(train), "train.csv")
    out_train = enc.transform(pa.array(train), "train.csv")
    out_other = enc.transform(pa.array(other), "test.csv")
    assert out_train.shape == (50, 1) and out_train.dtype == np.float32
    np.testing.assert_allclose(out_train[:, 0], (train - train.mean()) / train.std(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out_other[:, 0], (other - train.mean()) / train.std(), rtol=1e-5, atol=1e-5)
    assert abs(out_train.mean()) < 1e-5 and abs(out_train.std() - 1) < 1e-4
    assert abs(out_other.mean()) > 1.0  # not re-standardised on the other split


def test_minmax_scaling_uses_train_range():
    train = np.array([2.0, 4.0, 10.0])
    enc = num(scale="minmax").fit(pa.array(train), "train")
    np.testing.assert_allclose(enc.transform(pa.array(train), "train")[:, 0], [0.0, 0.25, 1.0])
    np.testing.assert_allclose(enc.transform(pa.array([18.0, 0.0]), "test")[:, 0], [2.0, -0.25])


def test_no_scaling_and_log1p():
    x = np.array([-9.0, 0.0, 3.0, 99.0])
    enc = num(scale="none", log1p=True).fit(pa.array(x), "t")
    np.testing.assert_allclose(enc.transform(pa.array(x), "t")[:, 0], np.sign(x) * np.log1p(np.abs(x)), rtol=1e-6)


def test_constant_column_does_not_divide_by_zero():
    enc = num().fit(pa.array([3.0, 3.0, 3.0]), "t")
    out = enc.transform(pa.array([3.0, 4.0]), "t")
    np.testing.assert_allclose(out[:, 0], [0.0, 1.0])


def test_impute_with_train_mean_and_indicator_when_train_had_nan():
    train = pa.array([1.0, None, 3.0, 8.0])  # observed mean 4, std of observed values
    enc = num().fit(train, "train")
    assert enc.indicator and enc.width == 2
    seen = np.array([1.0, 3.0, 8.0])
    out = enc.transform(pa.array([None, 4.0, 8.0]), "test")
    assert out.shape == (3, 2)
    # the missing value becomes the train mean, i.e. 0 after standardisation
    np.testing.assert_allclose(out[:, 0], (np.array([4.0, 4.0, 8.0]) - seen.mean()) / seen.std(), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(out[:, 1], [1.0, 0.0, 0.0])


def test_no_indicator_when_train_had_no_nan_but_nan_at_inference_still_imputed():
    enc = num(scale="none").fit(pa.array([2.0, 4.0, 6.0]), "train")
    assert not enc.indicator and enc.width == 1
    out = enc.transform(pa.array([None, 10.0, float("nan")]), "test")
    assert out.shape == (3, 1)
    np.testing.assert_allclose(out[:, 0], [4.0, 10.0, 4.0])


def test_all_empty_column_at_inference_is_imputed():
    """A CSV column with no values at all is read as pyarrow's null type."""
    enc = num(scale="none").fit(pa.array([2.0, 4.0]), "train")
    out = enc.transform(pa.array([None, None], pa.null()), "test.csv")
    np.testing.assert_allclose(out[:, 0], [3.0, 3.0])


def test_nan_error_policy_names_column_and_row():
    enc = num("income", nan="error")
    with pytest.raises(DataError, match=r"train\.csv.*'income'.*row 2"):
        enc.fit(pa.array([1.0, 2.0, None, 4.0]), "train.csv")
    enc = num("income", nan="error").fit(pa.array([1.0, 2.0]), "train.csv")
    with pytest.raises(DataError, match=r"test\.csv.*'income'.*row 1"):
        enc.transform(pa.array([1.0, float("nan")]), "test.csv")


@pytest.mark.parametrize("bad", ["abc", "1_000", "1,5"])
def test_non_numeric_text_names_file_column_row_and_value(bad):
    col = pa.array(["1.5", " 2 ", None, bad, "7"])
    with pytest.raises(DataError) as exc:
        num("amount").fit(col, "data/train.csv")
    msg = str(exc.value)
    assert "train.csv" in msg and "'amount'" in msg and repr(bad) in msg and "row 3" in msg


def test_numeric_text_with_blanks_parses():
    enc = num(scale="none").fit(pa.array(["1.5", " 2 ", "", None, "-3e1"]), "t")
    np.testing.assert_allclose(enc.transform(pa.array(["1.5", " 2 ", "", None, "-3e1"]), "t")[:, 0],
                               [1.5, 2.0, -26.5 / 3, -26.5 / 3, -30.0], rtol=1e-6)


def test_non_numeric_type_is_a_data_error():
    with pytest.raises(DataError, match="'x'"):
        num().fit(pa.array([[1.0], [2.0]]), "t")


def test_numeric_state_round_trip():
    enc = num().fit(pa.array([1.0, None, 5.0]), "t")
    clone = num().load(json.loads(json.dumps(enc.state())))
    col = pa.array([None, 2.0, 9.0])
    np.testing.assert_array_equal(enc.transform(col, "t"), clone.transform(col, "t"))


# -- categorical --------------------------------------------------------------------------------
def test_categorical_known_values_1_to_k_unseen_and_null_oov():
    enc = cat().fit(pa.array(["b", "a", "b", "c", None, "b", "a"]), "t")
    assert enc.cardinality == 4  # a, b, c + OOV
    codes = enc.transform(pa.array(["a", "b", "c", "zzz", None]), "t")
    assert codes.dtype == np.int64
    known = codes[:3]
    assert sorted(known.tolist()) == [1, 2, 3]  # a bijection onto 1..K
    assert codes[3] == OOV == 0 and codes[4] == OOV
    # the same value always gets the same id
    again = enc.transform(pa.array(["c", "a", "c", "b"]), "t")
    assert again.tolist() == [codes[2], codes[0], codes[2], codes[1]]


def test_categorical_min_count_maps_rare_values_to_oov():
    train = pa.array(["x"] * 3 + ["y"] * 2 + ["z"])
    enc = cat(min_count=2).fit(train, "t")
    assert enc.cardinality == 3
    codes = enc.transform(pa.array(["x", "y", "z"]), "t")
    assert codes[2] == OOV and set(codes[:2].tolist()) == {1, 2}


@pytest.mark.parametrize("fit_col", [
    pa.array([3, 5, 3, 7]),
    pa.array(["3", "5", "3", "7"]),
    pa.array([3.0, 5.0, 3.0, 7.0]),
    pa.array([3.0, 5.0, None, 3.0, 7.0]),
    pa.array([3.0, 5.0, float("nan"), 3.0, 7.0]),
])
def test_int_string_and_float_columns_agree(fit_col):
    """3, "3" and 3.0 are the same category (CSV vs Parquet, integer columns with nulls read as float)."""
    ref = cat().fit(pa.array([3, 5, 3, 7]), "t")
    enc = cat().fit(fit_col, "t")
    assert enc.vocab == ref.vocab
    for col in (pa.array([3, 7, 5, 9]), pa.array(["3", "7", "5", "9"]), pa.array([3.0, 7.0, 5.0, None]),
                pa.array([3.0, 7.0, 5.0, float("nan")])):
        codes = enc.transform(col, "t")
        assert codes[:3].tolist() == ref.transform(pa.array([3, 7, 5]), "t").tolist()
        assert codes[3] == OOV


def test_non_integral_floats_stay_distinct():
    enc = cat().fit(pa.array([1.5, 2.0, 1.5]), "t")
    codes = enc.transform(pa.array([1.5, 2.0, 2.5]), "t")
    assert codes[0] != codes[1] and OOV not in codes[:2] and codes[2] == OOV


def test_dictionary_and_chunked_columns():
    dict_col = pa.array(["a", "b", "a"]).dictionary_encode()
    enc = cat().fit(dict_col, "t")
    chunked = pa.chunked_array([pa.array(["b"]), pa.array(["a", "q"])])
    codes = enc.transform(chunked, "t")
    assert codes.tolist() == enc.transform(pa.array(["b", "a", "q"]), "t").tolist()
    assert codes[2] == OOV


def test_categorical_state_round_trip():
    enc = cat().fit(pa.array(["u", "v", "v"]), "t")
    clone = cat().load(json.loads(json.dumps(enc.state())))
    col = pa.array(["v", "w", "u"])
    assert enc.transform(col, "t").tolist() == clone.transform(col, "t").tolist()


# -- sequence -----------------------------------------------------------------------------------
def _ids(enc: SequenceEncoder) -> dict[str, int]:
    """Item -> id from the fitted vocabulary (ids 0 and 1 are padding and OOV)."""
    return {v: i + 2 for i, v in enumerate(enc.vocab)}


def test_sequence_list_column_padding_and_oov():
    train = pa.array([["a", "b"], ["b", "c", "b"], ["a"]])
    enc = seq(max_len=4).fit(train, "t")
    assert enc.vocab_size == 3 + 2
    ids = _ids(enc)
    assert sorted(ids.values()) == [2, 3, 4]
    out = enc.transform(pa.array([["a", "zz", "c"], ["b"]]), "t")
    assert out.shape == (2, 4) and out.dtype == np.int64
    assert out.tolist() == [[ids["a"], SEQ_OOV, ids["c"], PAD], [ids["b"], PAD, PAD, PAD]]


def test_sequence_separator_string_column_equals_list_column():
    enc_list = seq(max_len=3).fit(pa.array([["a", "b"], ["c"]]), "t")
    enc_str = seq(max_len=3, separator=";").fit(pa.array(["a;b", "c"]), "t")
    assert enc_list.vocab == enc_str.vocab
    a = enc_list.transform(pa.array([["c", "a"], ["b", "x"]]), "t")
    b = enc_str.transform(pa.array(["c;a", "b;x"]), "t")
    np.testing.assert_array_equal(a, b)


def test_sequence_truncation_keeps_last_items():
    vocab = [str(i) for i in range(10)]
    enc = seq(max_len=3).fit(pa.array([vocab]), "t")
    ids = _ids(enc)
    out = enc.transform(pa.array([vocab, ["0", "1", "2", "3"], ["9"]]), "t")
    assert out[0].tolist() == [ids["7"], ids["8"], ids["9"]]
    assert out[1].tolist() == [ids["1"], ids["2"], ids["3"]]
    assert out[2].tolist() == [ids["9"], PAD, PAD]


def test_sequence_empty_and_null_lists_are_all_padding():
    enc = seq(max_len=3).fit(pa.array([["a"], [], None]), "t")
    out = enc.transform(pa.array([[], None, ["a"]], pa.list_(pa.string())), "t")
    assert out[0].tolist() == [PAD] * 3 and out[1].tolist() == [PAD] * 3
    assert out[2].tolist() == [_ids(enc)["a"], PAD, PAD]


def test_sequence_string_empty_cell_and_stray_separators():
    enc = seq(max_len=4).fit(pa.array(["a|b", "b", ""]), "t")
    assert "" not in enc.vocab
    ids = _ids(enc)
    out = enc.transform(pa.array(["", None, "a||b", "a|", "|b"]), "t")
    assert out[0].tolist() == [PAD] * 4  # an empty history, not one OOV item
    assert out[1].tolist() == [PAD] * 4
    assert out[2].tolist() == [ids["a"], ids["b"], PAD, PAD]
    assert out[3].tolist() == [ids["a"], PAD, PAD, PAD]
    assert out[4].tolist() == [ids["b"], PAD, PAD, PAD]


def test_sequence_sliced_and_chunked_input():
    enc = seq(max_len=2).fit(pa.array([["a", "b", "c"]]), "t")
    full = pa.array([["a"], ["b", "c", "a"], ["c"], ["x", "b"]])
    expected = enc.transform(full, "t")
    np.testing.assert_array_equal(enc.transform(full.slice(1), "t"), expected[1:])
    chunked = pa.chunked_array([full.slice(0, 2), full.slice(2)])
    np.testing.assert_array_equal(enc.transform(chunked, "t"), expected)


def test_sequence_integer_items_and_min_count():
    enc = seq(max_len=3, min_count=2).fit(pa.array([[1, 2, 2], [1, 3]]), "t")
    assert enc.vocab_size == 2 + 2
    ids = _ids(enc)
    out = enc.transform(pa.array([["1", "3", "2"]]), "t")
    assert out[0].tolist() == [ids["1"], SEQ_OOV, ids["2"]]


# -- dense --------------------------------------------------------------------------------------
def test_dense_shape_inferred_and_declared():
    rows = np.arange(24, dtype=np.float32).reshape(3, 2, 4)
    col = pa.array([r.tolist() for r in rows])  # nested lists [3][2][4]
    enc = DenseEncoder(FeatureSpec("img", "dense", scale="none")).fit(col, "t")
    assert enc.shape == [2, 4]
    out = enc.transform(col, "t")
    assert out.shape == (3, 2, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out, rows)
    flat_col = pa.array([r.ravel().tolist() for r in rows])
    enc2 = DenseEncoder(FeatureSpec("img", "dense", shape=[2, 4], scale="none")).fit(flat_col, "t")
    np.testing.assert_array_equal(enc2.transform(flat_col, "t"), rows)


def test_dense_standardised_per_element_like_numeric_columns():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(200, 3)) * [1.0, 50.0, 0.01] + [0.0, 1000.0, -5.0]).astype(np.float32)
    col = pa.array(x.tolist())
    enc = DenseEncoder(FeatureSpec("v", "dense")).fit(col, "t")
    out = enc.transform(col, "t")
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(out.std(0), 1.0, atol=1e-3)
    # the same as three numeric columns
    for j in range(3):
        num = NumericEncoder(FeatureSpec(f"c{j}")).fit(pa.array(x[:, j].astype(np.float64)), "t")
        np.testing.assert_allclose(out[:, j], num.transform(pa.array(x[:, j].astype(np.float64)), "t")[:, 0], atol=1e-4)
    mm = DenseEncoder(FeatureSpec("v", "dense", scale="minmax")).fit(col, "t").transform(col, "t")
    np.testing.assert_allclose(mm.min(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(mm.max(0), 1.0, atol=1e-6)
    # state round trip: a reloaded encoder gives the same values
    again = DenseEncoder(FeatureSpec("v", "dense")).load(enc.state())
    np.testing.assert_array_equal(again.transform(col, "t"), out)


def test_dense_images_are_left_unscaled_unless_asked():
    rng = np.random.default_rng(1)
    x = rng.random((20, 1, 2, 2)).astype(np.float32) * 255
    col = pa.array([r.tolist() for r in x])
    np.testing.assert_array_equal(DenseEncoder(FeatureSpec("img", "dense")).fit(col, "t").transform(col, "t"), x)
    scaled = DenseEncoder(FeatureSpec("img", "dense", scale="standard")).fit(col, "t").transform(col, "t")
    np.testing.assert_allclose(scaled.reshape(20, -1).mean(0), 0.0, atol=1e-4)


def test_scale_default_resolves_so_specs_saved_before_it_compare_equal():
    """Transfer reuses a source run's encoder only when the specs are equal: an unset scale must
    read as the value older runs saved ("standard"), and a dense feature's once it is fitted."""
    assert FeatureSpec("x").scale == "standard" and FeatureSpec("c", "categorical").scale == "standard"
    vec = FeatureSpec("v", "dense")
    DenseEncoder(vec).fit(pa.array([[1.0, 2.0], [3.0, 4.0]]), "t")
    img = FeatureSpec("img", "dense")
    DenseEncoder(img).fit(pa.array([[[1.0, 2.0]], [[3.0, 4.0]]]), "t")
    assert (vec.scale, img.scale) == ("standard", "none")


def test_dense_saved_without_scale_state_loads_unscaled():
    """Runs saved before dense scaling have only the shape: they load and pass values through."""
    enc = DenseEncoder(FeatureSpec("v", "dense")).load({"shape": [2]})
    out = enc.transform(pa.array([[1.0, 200.0], [3.0, float("nan")]]), "t")
    np.testing.assert_array_equal(out[0], [1.0, 200.0])
    assert np.isnan(out[1, 1])


def test_dense_nan_imputed_or_refused_and_inf_refused():
    col = pa.array([[1.0, 2.0], [3.0, float("nan")], [5.0, 6.0]])
    enc = DenseEncoder(FeatureSpec("v", "dense", scale="none")).fit(col, "t")
    out = enc.transform(col, "t")
    assert out[1, 1] == 4.0  # the element's train mean
    with pytest.raises(DataError, match=r"'v'.*row 1 \(nan: error\)"):
        DenseEncoder(FeatureSpec("v", "dense", nan="error")).fit(col, "t")
    bad = pa.array([[1.0, 2.0], [3.0, 4.0], [5.0, float("-inf")]])
    with pytest.raises(DataError, match=r"t: dense column 'v' holds -inf at row 2"):
        DenseEncoder(FeatureSpec("v", "dense")).fit(bad, "t")
    with pytest.raises(DataError, match=r"row 2"):
        enc.transform(bad, "t")


def test_dense_ragged_rows_are_an_error():
    enc = DenseEncoder(FeatureSpec("v", "dense")).fit(pa.array([[1.0, 2.0]]), "t")
    with pytest.raises(DataError, match="'v'"):
        enc.transform(pa.array([[1.0, 2.0, 3.0]]), "t")
    # 2 rows holding 6 values: divisible by the row size, but not 2 rows of shape [2]
    with pytest.raises(DataError, match="'v'"):
        enc.transform(pa.array([[1.0, 2.0], [1.0, 2.0, 3.0, 4.0]]), "t")


def test_integer_categorical_fast_path_matches_the_string_path():
    """Integer columns use a dense lookup table; values outside the vocabulary (larger, negative,
    null) must still map to OOV, and ids must equal those of the same values given as strings."""
    from polytask.data.encoders import CategoricalEncoder
    from polytask.data.schema import FeatureSpec

    enc = CategoricalEncoder(FeatureSpec("c", "categorical")).fit(pa.array([5, 3, 3, 0, 7, 7, 7]), "train")
    got = enc.transform(pa.array([3, 99, -2, None, 0, 7, 5], pa.int64()), "x")
    expected = enc.transform(pa.array(["3", "99", "-2", None, "0", "7", "5"]), "x")
    assert got.tolist() == expected.tolist()
    assert got[1] == got[2] == got[3] == 0 and min(got[[0, 4, 5, 6]]) >= 1
    assert got[5] == 1  # the most frequent value gets the first id
