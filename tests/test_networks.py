import pytest
import torch

from vaes.networks import build_networks, count_parameters


# Pinned: the parameter counts of the original ResNet (computed_gamma.py / two_stage_vae_model.py Resnet, base 32, latent 64),
# trainable parameters only (TF gamma+beta; moving mean/var are buffers, not counted).
@pytest.mark.parametrize("shape,expected", [((3, 32, 32), 5_190_467), ((3, 64, 64), 19_321_667)])
def test_resnet_parameter_count(shape, expected):
    enc, dec = build_networks("resnet", shape, 64)
    assert count_parameters(enc) + count_parameters(dec) == expected


@pytest.mark.parametrize("shape,kind", [((3, 32, 32), "resnet"), ((1, 28, 28), "conv"),
                                        ((1, 8, 8), "conv"), ((1, 32, 32), "resnet")])
def test_shapes_round_trip(shape, kind):
    enc, dec = build_networks(kind, shape, 16)
    mu, logvar = enc(torch.rand(2, *shape))
    assert mu.shape == logvar.shape == (2, 16)
    assert dec(mu).shape == (2, *shape)


def test_resnet_refuses_other_sizes():
    with pytest.raises(ValueError, match="network=conv"):
        build_networks("resnet", (1, 28, 28), 16)


def test_mlp_second_stage():
    enc, dec = build_networks("mlp", (64,), 64, width=128, depth=3)
    mu, logvar = enc(torch.randn(5, 64))
    assert mu.shape == (5, 64) and dec(mu).shape == (5, 64)


def test_mlp_concatenates_its_input_before_the_output_layer():
    # both originals: depth dense ReLU layers, then [last hidden, input] -> output
    d, width, depth = 16, 32, 3
    enc, dec = build_networks("mlp", (d,), d, width=width, depth=depth)
    hidden = (d * width + width) + (depth - 1) * (width * width + width)
    assert count_parameters(dec) == hidden + (width + d) * d + d
    assert count_parameters(enc) == hidden + (width + d) * 2 * d + 2 * d
    # with every hidden layer zeroed the output still depends on the input: the skip path
    with torch.no_grad():
        for m in dec.modules():
            if isinstance(m, torch.nn.Linear) and m is not dec.out:
                m.weight.zero_(); m.bias.zero_()
    x = torch.randn(4, d, requires_grad=True)
    dec(x).sum().backward()
    assert x.grad.abs().sum() > 0


def test_resnet_64_shapes_batchnorm_and_init_as_the_originals():
    enc, dec = build_networks("resnet", (3, 64, 64), 64)
    mu, logvar = enc(torch.rand(2, 3, 64, 64))
    assert mu.shape == logvar.shape == (2, 64) and dec(mu).shape == (2, 3, 64, 64)
    bns = [m for m in [*enc.modules(), *dec.modules()] if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.001 and m.eps == 1e-5 for m in bns)  # TF decay 0.999
    layers = [m for m in [*enc.modules(), *dec.modules()] if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert all(torch.all(m.bias == 0) for m in layers)  # zero biases
    conv = next(m for m in layers if isinstance(m, torch.nn.Conv2d) and m.in_channels == 64)
    fan_in, fan_out = conv.in_channels * 9, conv.out_channels * 9
    bound = (6 / (fan_in + fan_out)) ** 0.5  # glorot uniform
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
