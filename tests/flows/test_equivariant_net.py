"""EquivariantNet: an escnn network applied to plain tensors, its equivariance check, and its
export, a different (plain torch) module computing the same function."""

from __future__ import annotations

import pytest
import torch

from flows import FlowConfig
from flows.groups import build_field_types, enn
from flows.layers import EquivariantNet
from flows.subnets import build_conditioner, build_subnet

from .conftest import image_batch, make_flow

NET_CONFIGS = [
    FlowConfig(family="residual", group="C4", data_shape=[2, 6, 6], width=2),
    FlowConfig(family="coupling", group="D4", data_shape=[3, 6, 6], width=2),
    FlowConfig(family="residual", group="D8", data_shape=[2], width=4),
    FlowConfig(family="residual", group="SO2", data_shape=[2], width=2),
]


def _nets(config: FlowConfig) -> list[EquivariantNet]:
    types = build_field_types(config)
    nets = [
        build_subnet(types, config),
        build_conditioner(types, types.data, types.data + types.data, config),
    ]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for net in nets:
            # Conditioners start at zero; random weights make the check meaningful.
            for parameter in net.parameters():
                parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    return [net.eval() for net in nets]


@pytest.mark.parametrize("config", NET_CONFIGS, ids=lambda c: f"{c.group}-{c.data_kind}")
def test_networks_are_equivariant_on_tensors_and_export_the_same_function(
    config: FlowConfig,
) -> None:
    for net in _nets(config):
        errors = net.check_equivariance(atol=1e-4, rtol=1e-4, grid=(6, 6))
        assert errors and max(error for _, error in errors) < 1e-4
        shape = (4, net.in_type.size) if config.is_points else (4, net.in_type.size, 6, 6)
        x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
        exported = net.export()
        assert type(exported) is torch.nn.Sequential
        assert not any(type(m).__module__.startswith("escnn") for m in exported.modules())
        assert [name for name, _ in exported.named_children()] == [
            name for name, _ in net.named_children()
        ]
        with torch.no_grad():
            assert torch.allclose(exported(x), net(x), atol=1e-5)


class _PositionBias(enn.EquivariantModule):
    """Adds a bias that grows along the rows: not equivariant under rotations."""

    def __init__(self, field_type: enn.FieldType) -> None:
        super().__init__()
        self.in_type = self.out_type = field_type
        self.scale = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        rows = torch.arange(x.shape[2], dtype=x.tensor.dtype)[:, None]
        return enn.GeometricTensor(x.tensor + self.scale * rows, self.out_type)

    def evaluate_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape


def test_the_equivariance_check_fails_on_a_network_that_is_not_equivariant() -> None:
    types = build_field_types(FlowConfig(group="C4", data_shape=[1, 6, 6]))
    with pytest.raises(AssertionError):
        EquivariantNet(_PositionBias(types.data)).check_equivariance(grid=(6, 6))


@pytest.mark.parametrize(
    "config",
    [
        {"family": "coupling", "coupling_split": "checkerboard", "group": "D4"},
        {"family": "residual", "group": "C4", "padding_channels": 1},
    ],
    ids=["checkerboard", "augmented-residual"],
)
def test_an_exported_flow_inverts_and_samples_as_the_equivariant_one(config: dict) -> None:
    flow = make_flow(data_shape=[1, 4, 4], depth=2, width=2, **config)
    exported = flow.export()
    assert not any(type(m).__module__.startswith("escnn") for m in exported.modules())
    x = image_batch(flow)
    padding_noise = None
    if flow.config.is_augmented:
        shape = (2, len(x), flow.config.padding_channels, *flow.data_shape[1:])
        padding_noise = torch.randn(shape, generator=torch.Generator().manual_seed(3)).double()
    with torch.no_grad():
        expected = flow.log_prob(x, method="exact", padding_noise=padding_noise)
        actual = exported.log_prob(x, method="exact", padding_noise=padding_noise)
        assert torch.allclose(actual, expected, atol=1e-9)
        again = exported.export().log_prob(x, method="exact", padding_noise=padding_noise)
        assert torch.equal(again, actual)
        z = torch.randn(3, *flow.latent_shape, generator=torch.Generator().manual_seed(4))
        assert torch.allclose(exported.inverse(z.double()), flow.inverse(z.double()), atol=1e-8)
    assert torch.allclose(exported.sample(3, seed=5), flow.sample(3, seed=5), atol=1e-8)
