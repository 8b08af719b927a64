"""Short depthwise convolution mixer (H3 / Hyena short filters, "Canon" layers): gate * conv(x).

y = out_proj(conv(u) * act(gate)), where [u, gate] = in_proj(x) and conv is a depthwise Conv1d of a
few taps. Causal mode pads on the left only; non-causal mode uses a centred ("same") kernel, so the
layer is natively bidirectional.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.registry import Primitive, register

GATE_ACTS = ("silu", "sigmoid", "identity")


@dataclass
class ConvConfig:
    kernel_size: int = field(default=4, metadata={"help": "taps of the depthwise convolution"})
    expand: float = field(default=1.0, metadata={"help": "inner width = expand * d_model"})
    gate_act: Literal["silu", "sigmoid", "identity"] = field(
        default="silu", metadata={"help": "activation on the multiplicative gate: silu, sigmoid or identity (H3)"})
    conv_bias: bool = field(default=True, metadata={"help": "bias on the depthwise convolution"})
    bias: bool = field(default=False, metadata={"help": "biases on the input and output projections"})


def inner_width(d_model: int, cfg: ConvConfig) -> int:
    return round(cfg.expand * d_model)


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          window: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal depthwise conv of x (batch, seq, ch) with weight (ch, 1, k), continuing after `window`.

    `window` (batch, k-1, ch) holds the inputs before x (zeros at the start of a sequence). Returns
    the output (batch, seq, ch) and the window to pass with the next piece.
    """
    b, _, ch = x.shape
    k = weight.shape[-1]
    if window is None:
        window = x.new_zeros(b, k - 1, ch)
    xe = torch.cat([window.to(x.dtype), x], dim=1)
    y = F.conv1d(xe.transpose(1, 2), weight, bias, groups=ch).transpose(1, 2)
    return y, xe[:, xe.shape[1] - (k - 1):]


@register
class ShortConv(Primitive):
    name = "conv"
    Config = ConvConfig
    role = "sequence"
    native_bidirectional = True  # a centred kernel reads both sides
    # Every knob is relative: kernel taps do not depend on width and `expand` is a factor of d_model,
    # so a proxy's choices carry over to any width unchanged (the Primitive defaults).
    width_knobs = ()

    def __init__(self, d_model: int, cfg: ConvConfig, causal: bool = True):
        super().__init__(d_model, cfg, causal)
        e = inner_width(d_model, cfg)
        self.in_proj = nn.Linear(d_model, 2 * e, bias=cfg.bias)
        self.conv = nn.Conv1d(e, e, cfg.kernel_size, groups=e, bias=cfg.conv_bias)
        self.out_proj = nn.Linear(e, d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor, state: dict | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        u, gate = self.in_proj(x).chunk(2, dim=-1)
        if mask is not None:
            # Padded inputs become the zeros the kernel reads past either end of an unpadded sequence,
            # so real positions next to the padding (centred kernel, or left padding) see no change.
            u = u * mask.unsqueeze(-1).to(u.dtype)
        k = self.cfg.kernel_size
        if self.causal:
            u, window = causal_depthwise_conv(u, self.conv.weight, self.conv.bias,
                                              None if state is None else state.get("window"))
            if state is not None:
                state["window"] = window
        else:
            if state is not None:
                raise ValueError("a non-causal conv layer has no incremental state (its kernel reads ahead)")
            left = (k - 1) // 2  # same split as padding="same": the extra tap of an even kernel looks ahead
            u = F.pad(u.transpose(1, 2), (left, k - 1 - left))
            u = F.conv1d(u, self.conv.weight, self.conv.bias, groups=u.shape[1]).transpose(1, 2)
        if self.cfg.gate_act == "silu":
            gate = F.silu(gate)
        elif self.cfg.gate_act == "sigmoid":
            gate = torch.sigmoid(gate)
        return self.out_proj(u * gate)

    @classmethod
    def check(cls, d_model: int, cfg: ConvConfig) -> list[tuple[str, str]]:
        problems = []
        if not isinstance(cfg.kernel_size, int) or cfg.kernel_size < 1:
            problems.append(("kernel_size", f"must be a positive integer (typically 2-8), got {cfg.kernel_size!r}"))
        if cfg.expand <= 0 or inner_width(d_model, cfg) < 1:
            problems.append(("expand", f"must give an inner width >= 1 (expand > 0), got {cfg.expand}"))
        elif abs(cfg.expand * d_model - inner_width(d_model, cfg)) > 1e-6:
            problems.append(("expand", f"expand * d_model must be an integer; {cfg.expand} * {d_model} is not"))
        if cfg.gate_act not in GATE_ACTS:
            problems.append(("gate_act", f"{cfg.gate_act!r} is not one of {', '.join(GATE_ACTS)}"))
        return problems

    @classmethod
    def param_count(cls, d_model: int, cfg: ConvConfig) -> int:
        e = inner_width(d_model, cfg)
        n = 3 * d_model * e + cfg.kernel_size * e
        if cfg.conv_bias:
            n += e
        if cfg.bias:
            n += 2 * e + d_model
        return n

    @classmethod
    def flops_per_token(cls, d_model: int, cfg: ConvConfig, seq_len: int) -> float:
        """Projections (3 * d_model * inner multiply-adds) plus kernel_size multiply-adds per channel."""
        e = inner_width(d_model, cfg)
        return 2.0 * (3 * d_model * e + cfg.kernel_size * e)

    @classmethod
    def cache_bytes(cls, d_model: int, cfg: ConvConfig, seq_len: int, bytes_per_elem: int = 2) -> int:
        """The last kernel_size - 1 inputs of the convolution."""
        return (cfg.kernel_size - 1) * inner_width(d_model, cfg) * bytes_per_elem
