"""The A2Q paper's 1-layer linear classifier on binarized MNIST-format images.

784 unsigned 1-bit inputs (N=1), 8-bit weights (M=8), no bias, 10 outputs; K=784 gives a
19-bit data-type bound. The logits are quantized to 8 bits, so in FINN the per-channel weight
scales fold into the output thresholds and the graph ends in LabelSelect.
"""

from __future__ import annotations

import brevitas.nn as qnn
from torch import nn

from models.quant import BinaryInputQuant, SignedActQuant, weight_kwargs


class LinearClassifier(nn.Module):
    """Input (batch, in_features) of {0, 1} floats; output (batch, num_classes) logits."""

    def __init__(
        self,
        quantizer: str = "a2q",
        acc_bits: int | None = 16,
        weight_bits: int = 8,
        in_features: int = 784,
        num_classes: int = 10,
        output_bits: int = 8,
    ):
        super().__init__()
        self.input_shape = (in_features,)
        self.input_quant = qnn.QuantIdentity(act_quant=BinaryInputQuant, return_quant_tensor=True)
        self.fc = qnn.QuantLinear(
            in_features, num_classes, bias=False, **weight_kwargs(quantizer, weight_bits, acc_bits)
        )
        self.output_quant = qnn.QuantIdentity(act_quant=SignedActQuant, bit_width=output_bits)

    def forward(self, x):
        return self.output_quant(self.fc(self.input_quant(x)))


def build_linear(quantizer: str, acc_bits: int | None, weight_bits: int = 8, act_bits: int = 1, width: float = 1.0):
    """Registry factory; ``act_bits`` and ``width`` are fixed by the paper's setup for this model."""
    return LinearClassifier(quantizer=quantizer, acc_bits=acc_bits, weight_bits=weight_bits)
