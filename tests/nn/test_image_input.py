"""The model side of image features (:class:`polytask.nn.image_input.ImageInputs`, applied by
every model whose input spec has images): normalisation, and the flip and pad-crop augmentations
(training mode only, per example, vectorised, from torch's global generator)."""

from __future__ import annotations

import copy

import torch

from polytask.data.schema import InputSpec
from polytask.models import create_model
from polytask.nn.image_input import ImageInputs, random_crop
from polytask.tasks import Task

MEAN, STD = [0.2, 0.5, 0.8], [0.1, 0.25, 0.5]


def images(flip: bool = False, crop: int = 0) -> dict:
    return {"img": {"mean": MEAN, "std": STD, "flip": flip, "crop": crop}}


def pixels(b: int = 4, h: int = 5, w: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def normalised(x: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (x.double() / 255 - mean.double()) / std.double()


def test_normalisation_known_answer_and_other_features_pass_through():
    module = ImageInputs(images()).eval()
    x = torch.zeros(1, 3, 1, 2, dtype=torch.uint8)
    x[0, :, 0, 1] = 255
    other = torch.arange(3.0)
    out = module({"dense:img": x, "numeric": other})
    assert out["dense:img"].dtype == torch.float32
    # channel c: (0 - mean) / std and (1 - mean) / std
    expected = torch.tensor([[[[-2.0, 8.0]], [[-2.0, 2.0]], [[-1.6, 0.4]]]])
    torch.testing.assert_close(out["dense:img"], expected)
    assert out["numeric"] is other
    x = pixels()
    torch.testing.assert_close(module({"dense:img": x})["dense:img"].double(), normalised(x), rtol=1e-6, atol=1e-5)
    # float input is in [0, 1] pixel units: x / 255 gives the same as the uint8 pixels
    torch.testing.assert_close(module({"dense:img": x.float() / 255})["dense:img"], module({"dense:img": x})["dense:img"])
    # the input dict is not changed; no state to save
    features = {"dense:img": x}
    module(features)
    assert features["dense:img"] is x and features["dense:img"].dtype == torch.uint8
    assert module.state_dict() == {} and len(list(module.buffers())) == 2


def test_eval_mode_is_deterministic_and_does_not_augment():
    module = ImageInputs(images(flip=True, crop=3)).eval()
    x = pixels(16)
    state = torch.get_rng_state()
    a, b = module({"dense:img": x})["dense:img"], module({"dense:img": x})["dense:img"]
    assert torch.equal(a, b)
    torch.testing.assert_close(a.double(), normalised(x), rtol=1e-6, atol=1e-5)
    assert torch.equal(torch.get_rng_state(), state)  # no random number drawn


def test_no_random_numbers_in_training_without_augmentation():
    module = ImageInputs(images()).train()
    x = pixels()
    state = torch.get_rng_state()
    torch.testing.assert_close(module({"dense:img": x})["dense:img"].double(), normalised(x), rtol=1e-6, atol=1e-5)
    assert torch.equal(torch.get_rng_state(), state)


def test_flip_in_training_mirrors_some_examples_exactly():
    torch.manual_seed(0)
    module = ImageInputs(images(flip=True)).train()
    x = pixels(1, 4, 7).expand(64, -1, -1, -1).contiguous()  # one asymmetric image, 64 times
    out = module({"dense:img": x})["dense:img"]
    plain = ImageInputs(images()).eval()({"dense:img": x})["dense:img"]
    same = (out == plain).flatten(1).all(1)
    mirrored = (out == plain.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())  # every example is the image or its exact mirror
    assert 10 < int(mirrored.sum()) < 54  # about half flipped
    assert not bool((same & mirrored).any())


def test_crop_shifts_by_at_most_crop_and_pads_black():
    torch.manual_seed(1)
    crop, h, w = 2, 7, 9
    x = torch.zeros(200, 3, h, w, dtype=torch.uint8)
    x[:, :, 3, 4] = 255  # one white pixel
    out = random_crop(x, crop)
    assert out.shape == x.shape and out.dtype == torch.uint8
    shifts = set()
    for i in range(len(out)):
        where = (out[i, 0] == 255).nonzero()
        if len(where) == 0:  # shifted out of the window: impossible, it is 3 px from the edge > crop
            raise AssertionError(f"example {i} lost its pixel")
        (r, c), = where.tolist()
        assert abs(r - 3) <= crop and abs(c - 4) <= crop
        assert int(out[i].sum()) == 255 * 3  # the rest is black (padding included)
        shifts.add((r - 3, c - 4))
    assert len(shifts) == (2 * crop + 1) ** 2  # every offset occurs
    # in the module: padding is black in pixel units, so it becomes (0 - mean) / std
    torch.manual_seed(2)
    module = ImageInputs(images(crop=3)).train()
    y = module({"dense:img": torch.full((50, 3, 4, 4), 255, dtype=torch.uint8)})["dense:img"]
    black = torch.tensor([(0 - m) / s for m, s in zip(MEAN, STD)]).view(1, 3, 1, 1)
    white = torch.tensor([(1 - m) / s for m, s in zip(MEAN, STD)]).view(1, 3, 1, 1)
    assert bool(((y - black).abs() < 1e-5).any()) and bool(((y - white).abs() < 1e-5).any())
    assert bool((((y - black).abs() < 1e-5) | ((y - white).abs() < 1e-5)).all())


def test_seeded_pad_crop_known_answer():
    crop = 2
    x = pixels(5, 4, 6, seed=3)
    torch.manual_seed(7)
    dy = torch.randint(0, 2 * crop + 1, (5,))  # the documented draws: dy, then dx, then the flip
    dx = torch.randint(0, 2 * crop + 1, (5,))
    flip = torch.rand(5) < 0.5
    padded = torch.zeros(5, 3, 4 + 2 * crop, 6 + 2 * crop, dtype=torch.uint8)
    padded[:, :, crop:-crop, crop:-crop] = x
    expected = torch.stack([padded[i, :, dy[i] : dy[i] + 4, dx[i] : dx[i] + 6] for i in range(5)])
    expected = torch.where(flip[:, None, None, None], expected.flip(-1), expected)
    torch.manual_seed(7)
    out = ImageInputs(images(flip=True, crop=crop)).train()({"dense:img": x})["dense:img"]
    torch.testing.assert_close(out.double(), normalised(expected), rtol=1e-6, atol=1e-5)
    torch.manual_seed(7)
    again = ImageInputs(images(flip=True, crop=crop)).train()({"dense:img": x})["dense:img"]
    assert torch.equal(out, again)  # a seeded run repeats


def test_models_apply_it_before_every_forward():
    spec = InputSpec(dense={"img": [3, 8, 8]}, images=images(flip=True, crop=1))
    tasks = [Task("a", "binary"), Task("b", "regression")]
    torch.manual_seed(0)
    model = create_model("shared_bottom", spec, tasks, {"encoder": "cnn", "encoder_params": {"channels": [4], "kernel_size": 3}})
    torch.manual_seed(0)
    plain = create_model("shared_bottom", InputSpec(dense={"img": [3, 8, 8]}), tasks,
                         {"encoder": "cnn", "encoder_params": {"channels": [4], "kernel_size": 3}})
    assert model.state_dict().keys() == plain.state_dict().keys()  # nothing saved for the images
    plain.load_state_dict(model.state_dict())
    model.eval(), plain.eval()
    x = pixels(6, 8, 8)
    out = model({"dense:img": x})
    ref = plain({"dense:img": normalised(x).float()})
    for t in ("a", "b"):
        torch.testing.assert_close(out[t], ref[t], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(features={"dense:img": x})[t], out[t])  # keyword call too
        torch.testing.assert_close(model({"dense:img": x.float() / 255})[t], out[t])  # float pixels in [0, 1]
    clone = copy.deepcopy(model)  # the hook follows the copy
    torch.testing.assert_close(clone({"dense:img": x})["a"], out["a"])
    # in training mode the augmentation runs (random draws), in eval mode it does not
    model.train()
    state = torch.get_rng_state()
    model({"dense:img": x})
    assert not torch.equal(torch.get_rng_state(), state)
