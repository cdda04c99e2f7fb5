"""Bring your own model: networks the zoo does not contain, as QONNX files (ONNX=) and as Brevitas modules
(build_module), taken through FINN by the topology the flow reads from the graph; and one clear line for
what FINN cannot map."""

import brevitas.nn as qnn
import pytest
import torch
from brevitas.export import export_qonnx
from brevitas.quant import TruncTo8bit
from torch import nn

from flow.artifacts import Sidecar
from flow.core.errors import FlowError
from flow.export import export_qonnx_exact
from flow.options import BuildOptions
from flow.pipeline import build, build_module
from models.blocks import image_input_quant, io_conv, pixel_output_quant, quant_conv, quant_relu
from models.calibration import calibrate_statistics
from models.mobilenetv1 import DepthwiseSeparable
from models.quant import SignedActQuant, weight_kwargs
from models.resnet18 import BasicBlock

P = 14


class OddResidual(nn.Module):
    """A stem, one residual block with 5 channels (identity shortcut), a pool and a classifier."""

    def __init__(self):
        super().__init__()
        self.inp, self.stem, self.bn, self.act = image_input_quant(), io_conv(1, 5, 3), nn.BatchNorm2d(5), quant_relu(4)
        self.block = BasicBlock(5, 5, 1, weight_kwargs("a2q", 4, P), 4, self.act)
        self.pool = qnn.TruncAvgPool2d(kernel_size=8, stride=8, trunc_quant=TruncTo8bit, bit_width=8,
                                       float_to_int_impl_type="FLOOR")
        self.fc = qnn.QuantLinear(5, 4, bias=True, **weight_kwargs("baseline", 8, None))
        self.out = qnn.QuantIdentity(act_quant=SignedActQuant, bit_width=8)

    def forward(self, x):
        x = self.block(self.act(self.bn(self.stem(self.inp(x)))))
        return self.out(self.fc(self.pool(x).flatten(1)))


class Depthwise(nn.Module):
    """A stem, one depthwise-separable block (A2Q+), a pool and a classifier."""

    def __init__(self):
        super().__init__()
        self.inp, self.stem, self.bn, self.act = image_input_quant(), io_conv(1, 6, 3), nn.BatchNorm2d(6), quant_relu(4)
        self.block = DepthwiseSeparable(6, 7, 1, weight_kwargs("a2q+", 4, P), 4)
        self.pool = qnn.TruncAvgPool2d(kernel_size=8, stride=8, trunc_quant=TruncTo8bit, bit_width=8,
                                       float_to_int_impl_type="FLOOR")
        self.fc = qnn.QuantLinear(7, 3, bias=True, **weight_kwargs("baseline", 8, None))
        self.out = qnn.QuantIdentity(act_quant=SignedActQuant, bit_width=8)

    def forward(self, x):
        return self.out(self.fc(self.pool(self.block(self.act(self.bn(self.stem(self.inp(x)))))).flatten(1)))


class ResizeConv(nn.Module):
    """x2 super-resolution with a nearest-neighbour resize convolution, ``channels`` colour channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.inp, self.c1, self.a1 = image_input_quant(), io_conv(channels, 8, 3), quant_relu(4)
        self.c2, self.a2 = quant_conv(8, 6, 3, "a2q", 4, P), quant_relu(4)
        self.up, self.c3, self.out = nn.Upsample(scale_factor=2, mode="nearest"), io_conv(6, channels, 3, bias=True), \
            pixel_output_quant()

    def forward(self, x):
        return self.out(self.c3(self.up(self.a2(self.c2(self.a1(self.c1(self.inp(x))))))))


class SubPixel(nn.Module):
    """x2 super-resolution with a sub-pixel convolution (pixel shuffle): FINN cannot map it."""

    def __init__(self):
        super().__init__()
        self.inp, self.c1, self.a1 = image_input_quant(), io_conv(1, 8, 3), quant_relu(4)
        self.c2 = quant_conv(8, 4, 3, "a2q", 4, P)
        self.shuffle, self.out = nn.PixelShuffle(2), pixel_output_quant()

    def forward(self, x):
        return self.out(self.shuffle(self.c2(self.a1(self.c1(self.inp(x))))))


def calibrated(model, shape, seed=0):
    torch.manual_seed(seed)
    images = torch.rand(32, *shape, generator=torch.Generator().manual_seed(seed))
    calibrate_statistics(model, images)
    return model.eval(), images


def roots(tmp_path):
    return {"reports_root": tmp_path / "reports", "work_root": tmp_path / "work", "checkpoint_root": tmp_path / "ckpt"}


def check(summary, acc_bits=P):
    assert summary["finn_check"]["passed"] and summary["finn_check"]["mismatches"] == 0
    constrained = [layer for layer in summary["layers"] if layer["acc_bits_target"] is not None]
    assert constrained and all(layer["acc_bits_target"] == acc_bits and layer["acc_bits_exact"] <= acc_bits
                               for layer in constrained)
    assert all(layer["op_type"].split("_")[0] in {"MVAU", "VVAU", "Thresholding", "LabelSelect", "ConvolutionInputGenerator",
                                                  "FMPadding", "DuplicateStreams", "ElementwiseAdd", "Pool",
                                                  "UpsampleNearestNeighbour", "ElementwiseMul", "StreamingDataWidthConverter", "Shuffle"}
               for layer in summary["layers"])


def test_residual_net_with_odd_channels_through_onnx(tmp_path):
    model, images = calibrated(OddResidual(), (1, 8, 8))
    export_qonnx_exact(model, images[:1], tmp_path / "odd.onnx", check_inputs=images[:4], meta={"task": "classification"})
    summary = build(BuildOptions(onnx=str(tmp_path / "odd.onnx"), target_fps=1000, **roots(tmp_path)))
    check(summary)
    assert sum(layer["op_type"].startswith("ElementwiseAdd") for layer in summary["layers"]) == 1
    assert summary["finn_check"]["compared"] == "integer logits"


def test_resize_convolution_exported_by_brevitas_itself_through_onnx(tmp_path):
    """A super-resolution model exported by another tool (Brevitas's own QONNX exporter, no sidecar): the flow
    reads the resize convolution from the graph, and sets every accumulator to its exact minimum."""
    model, images = calibrated(ResizeConv(1), (1, 8, 8))
    export_qonnx(model, input_t=images[:1], export_path=str(tmp_path / "sr.onnx"), dynamo=False, opset_version=13)
    summary = build(BuildOptions(onnx=str(tmp_path / "sr.onnx"), target_fps=1000, **roots(tmp_path)))
    assert summary["finn_check"]["passed"] and summary["finn_check"]["compared"] == "output"
    mvaus = [layer for layer in summary["layers"] if layer["op_type"].startswith("MVAU")]
    assert len(mvaus) == 3 and all(layer["acc_source"] == "exact" for layer in mvaus)
    assert any(layer["op_type"].startswith("UpsampleNearestNeighbour") for layer in summary["layers"])


def test_three_colour_resize_convolution_through_build_module(tmp_path):
    model, images = calibrated(ResizeConv(3), (3, 8, 8))
    summary = build_module(model, images[:1], "sr3", target_fps=1000, task="super_resolution",
                           check_inputs=images[:2], reports_root=tmp_path / "reports", work_root=tmp_path / "work")
    check(summary)
    assert summary["build"].startswith("sr3_pynq-z2-") and summary["totals"]["max_cycles"] > 0


def test_sub_pixel_convolution_gets_one_line_with_what_to_do(tmp_path):
    model, images = calibrated(SubPixel(), (1, 8, 8))
    with pytest.raises(FlowError, match=r"DepthToSpace .*node \d+ of \d+.*nearest-neighbour resize convolution.*"
                                        r"models/espcn.py"):
        build_module(model, images[:1], "subpixel", target_fps=1000, task="super_resolution",
                     reports_root=tmp_path / "reports", work_root=tmp_path / "work")


def test_brevitas_a2q_espcn_example_gets_the_sub_pixel_explanation(tmp_path):
    from brevitas_examples.super_resolution.models import get_model_by_name

    torch.manual_seed(0)
    model = get_model_by_name("quant_espcn_x2_w4a4_a2q_13b").eval()
    sample = torch.rand(1, model.conv1.in_channels if hasattr(model, "conv1") else 3, 16, 16)
    with pytest.raises(FlowError, match="DepthToSpace.*pixel shuffle of a sub-pixel convolution"):
        build_module(model, sample, "brevitas_espcn", target_fps=1000, task="super_resolution",
                     reports_root=tmp_path / "reports", work_root=tmp_path / "work")


def test_a_float_layer_between_finn_layers_names_the_missing_quantizer(tmp_path):
    class FloatMiddle(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.c1, self.a1 = image_input_quant(), io_conv(1, 4, 3), quant_relu(4)
            self.float_conv = nn.Conv2d(4, 4, 3, padding=1)  # no quantizer at all
            self.requant = qnn.QuantIdentity(act_quant=SignedActQuant, bit_width=4, return_quant_tensor=True)
            self.c2, self.out = io_conv(4, 1, 3, bias=True), pixel_output_quant()

        def forward(self, x):
            return self.out(self.c2(self.requant(self.float_conv(self.a1(self.c1(self.inp(x)))))))

    model, images = calibrated(FloatMiddle(), (1, 8, 8))
    with pytest.raises(FlowError, match="stays outside FINN's HW layers: .*quantizer"):
        build_module(model, images[:1], "floatmid", target_fps=1000, task="super_resolution",
                     reports_root=tmp_path / "reports", work_root=tmp_path / "work")


@pytest.mark.slow
def test_depthwise_block_through_onnx_and_build_module(tmp_path):
    model, images = calibrated(Depthwise(), (1, 8, 8))
    check(build_module(model, images[:1], "dw", target_fps=1000, check_inputs=images[:2], **{
        "reports_root": tmp_path / "reports", "work_root": tmp_path / "work"}))
    export_qonnx_exact(model, images[:1], tmp_path / "dw.onnx", check_inputs=images[:4], meta={"task": "classification"})
    summary = build(BuildOptions(onnx=str(tmp_path / "dw.onnx"), target_fps=1000, **roots(tmp_path)))
    check(summary)
    assert any(layer["op_type"].startswith("VVAU") for layer in summary["layers"])
    assert Sidecar.read(tmp_path / "dw.onnx").layers[1].depthwise


@pytest.mark.slow
def test_residual_net_through_build_module_and_resize_through_onnx_with_sidecar(tmp_path):
    model, images = calibrated(OddResidual(), (1, 8, 8))
    check(build_module(model, images[:1], "odd", target_fps=1000, check_inputs=images[:2],
                       reports_root=tmp_path / "reports", work_root=tmp_path / "work"))
    model, images = calibrated(ResizeConv(1), (1, 8, 8))
    export_qonnx_exact(model, images[:1], tmp_path / "sr.onnx", check_inputs=images[:4], meta={"task": "super_resolution"})
    check(build(BuildOptions(onnx=str(tmp_path / "sr.onnx"), target_fps=1000, **roots(tmp_path))))
