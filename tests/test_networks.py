import pytest
import torch

from vaes.networks import build_networks, count_parameters


# Pinned: the parameter counts of
# the original ResNet (computed_gamma.py / two_stage_vae_model.py Resnet, base 32, latent 64),
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
