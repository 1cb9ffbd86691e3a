"""ConvBlock against functional torch: conv -> [batch norm] -> max-pool -> activation, the output
size rule for valid/same padding and pooling, and its errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from polytask.nn import ConvBlock
from polytask.nn.conv import conv_output_size


@pytest.mark.parametrize(("padding", "kernel", "pool", "expected"), [("valid", 3, 2, (6, 4)), ("same", 3, 2, (7, 5)),
                                                                       ("valid", 5, 1, (10, 7)), ("same", 5, 3, (4, 3))])
def test_output_size_rule_matches_the_block(padding, kernel, pool, expected):
    block = ConvBlock(2, 3, kernel_size=kernel, padding=padding, pool=pool)
    out = block(torch.randn(2, 2, 14, 11))
    assert tuple(out.shape) == (2, 3, *expected) and block.out_size(14, 11) == expected
    assert conv_output_size(14, kernel_size=kernel, padding=padding, pool=pool) == out.shape[2]
    assert block.pools == (pool > 1)


def test_block_equals_functional_reference_with_batch_norm():
    torch.manual_seed(0)
    block = ConvBlock(2, 4, kernel_size=3, padding="same", pool=2, batch_norm=True, act="tanh")
    assert [type(m) for m in block] == [nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.Tanh]
    x = torch.randn(3, 2, 8, 8)
    block.train()
    conv, bn = block[0], block[1]
    ref = F.conv2d(x, conv.weight, conv.bias, padding=1)
    ref = F.batch_norm(ref, None, None, bn.weight, bn.bias, training=True)
    torch.testing.assert_close(block(x), torch.tanh(F.max_pool2d(ref, 2)))


def test_no_pooling_layer_when_pool_is_one():
    block = ConvBlock(1, 2, pool=1)
    assert [type(m) for m in block] == [nn.Conv2d, nn.ReLU] and block.pools == 0


@pytest.mark.parametrize(("kwargs", "match"), [({"padding": "full"}, "padding"), ({"pool": 0}, "pool"),
                                                ({"out_channels": 0}, "channel"), ({"act": "nope"}, "activation")])
def test_errors_name_the_setting(kwargs, match):
    args = {"in_channels": 1, "out_channels": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        ConvBlock(args.pop("in_channels"), args.pop("out_channels"), **args)
