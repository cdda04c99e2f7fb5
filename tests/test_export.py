"""The QONNX export carries the exact A2Q integers, matches torch, and respects the l1 budgets."""

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper
from torch import nn

from flow.artifacts import Sidecar
from flow.core import accumulator as acc
from flow.core.errors import FlowError
from flow.export import export_qonnx_exact, onnx_weight_ints
from models.inspect import capture_quant_layers
from models.linear import LinearClassifier
from models.quant import UnsignedActQuant, weight_kwargs


def binary_inputs(n, seed=0):
    return (torch.rand(n, 784, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


@pytest.mark.parametrize("quantizer,p", [("a2q", 12), ("a2q", 16), ("a2q+", 14)])
def test_linear_export_is_exact_and_within_budget(tmp_path, quantizer, p):
    torch.manual_seed(0)
    model = LinearClassifier(quantizer=quantizer, acc_bits=p)
    inputs = binary_inputs(16)
    sidecar = export_qonnx_exact(model, inputs[:1], tmp_path / "m.onnx", check_inputs=inputs)
    # float32 torch against the float64 evaluation of the same integers: rounding of s * q only
    assert sidecar.export_check.max_abs_diff < 1e-5
    assert sidecar.export_check.weights_exact and sidecar.export_check.l1_bound_ok
    assert sidecar.input_datatype == "BINARY"
    (layer,) = sidecar.layers
    assert (layer.k, layer.weight_bits, layer.input_bits, layer.input_signed) == (784, 8, 1, False)
    assert layer.acc_bits_target == p and layer.quantizer == quantizer
    assert layer.acc_bits_datatype_bound == 19
    assert layer.acc_bits_exact <= p
    # the integers in the ONNX file are Brevitas' integers, bit for bit
    brevitas_ints = capture_quant_layers(model, inputs[:1])["fc"]["weights_int"]
    (onnx_ints,) = onnx_weight_ints(ModelWrapper(str(tmp_path / "m.onnx"))).values()
    assert np.array_equal(onnx_ints, brevitas_ints)
    assert np.abs(onnx_ints).sum(axis=1).max() <= acc.l1_bound(quantizer, p, 1, False)
    assert Sidecar.read(tmp_path / "m.onnx") == sidecar


class TinyConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = qnn.QuantIdentity(act_quant=UnsignedActQuant, bit_width=4, return_quant_tensor=True)
        self.conv = qnn.QuantConv2d(2, 3, 3, bias=False, **weight_kwargs("a2q", 4, 10))
        self.relu = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
        self.fc = qnn.QuantLinear(3 * 4 * 4, 5, bias=False, **weight_kwargs("baseline", 8, None))

    def forward(self, x):
        return self.fc(self.relu(self.conv(self.inp(x))).flatten(1))


def test_conv_export_records_each_layer(tmp_path):
    torch.manual_seed(0)
    model = TinyConvNet()
    x = torch.rand(4, 2, 6, 6)
    sidecar = export_qonnx_exact(model, x[:1], tmp_path / "c.onnx", check_inputs=x)
    layers = {layer.name: layer for layer in sidecar.layers}
    assert layers["conv"].k == 18 and layers["conv"].acc_bits_target == 10
    assert (layers["conv"].input_bits, layers["conv"].input_signed) == (4, False)
    assert layers["fc"].quantizer == "baseline" and layers["fc"].acc_bits_target is None
    assert layers["conv"].weight_l1_norm_max <= acc.a2q_l1_bound(10, 4, False)
    assert sidecar.export_check.weights_exact
    assert sidecar.export_check.max_abs_diff < 1e-5


def test_all_zero_layer_is_refused(tmp_path):
    # P=8 leaves an l1 budget of 63 for 784 weights: round-to-zero turns every one into 0.
    torch.manual_seed(0)
    model = LinearClassifier(quantizer="a2q", acc_bits=8)
    with pytest.raises(FlowError, match="every weight quantized to zero at P=8.*raise P"):
        export_qonnx_exact(model, binary_inputs(1), tmp_path / "z.onnx")


def test_unquantized_input_is_a_clear_error(tmp_path):
    model = nn.Sequential(qnn.QuantLinear(4, 2, bias=False, **weight_kwargs("a2q", 8, 12)))
    with pytest.raises(FlowError, match="unquantized input"):
        export_qonnx_exact(model, torch.rand(1, 4), tmp_path / "u.onnx")


@pytest.mark.parametrize("signed", [False, True])
def test_a2q_plus_with_multi_bit_inputs_keeps_its_certificate(tmp_path, signed):
    """A2Q+ on 4-bit inputs, unsigned and signed: the exact accumulator range of the exported integers (the
    split certificate sum(q>0)*xmax - sum(q<0)*xmin) fits P, where the data-type bound says it would not."""
    from models.quant import SignedActQuant

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            act = SignedActQuant if signed else UnsignedActQuant
            self.inp = qnn.QuantIdentity(act_quant=act, bit_width=4, return_quant_tensor=True)
            self.conv = qnn.QuantConv2d(8, 6, 3, bias=False, **weight_kwargs("a2q+", 4, 11))

        def forward(self, x):
            return self.conv(self.inp(x))

    torch.manual_seed(0)
    model = Net()
    x = torch.randn(8, 8, 5, 5)
    model.train()
    with torch.no_grad():
        model(x)
    sidecar = export_qonnx_exact(model.eval(), x[:1], tmp_path / "p.onnx", check_inputs=x[:4])
    (layer,) = sidecar.layers
    assert (layer.quantizer, layer.input_bits, layer.input_signed, layer.acc_bits_target) == ("a2q+", 4, signed, 11)
    (ints,) = onnx_weight_ints(ModelWrapper(str(tmp_path / "p.onnx"))).values()
    lo, hi = acc.input_range(4, signed)
    acc_min, acc_max = acc.exact_acc_range(ints, lo, hi)
    assert acc.signed_bits_for_range(int(acc_min.min()), int(acc_max.max())) == layer.acc_bits_exact <= 11
    assert layer.l1_bound_ok and layer.weight_l1_norm_max <= acc.a2q_plus_l1_bound(11, 4)
    # without the constraint the same layer would need more: the budget binds
    assert acc.datatype_bound_bits(72, 4, 4, signed) > 11
