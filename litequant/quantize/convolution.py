"""The geometry of TFLite convolutions: which input values each output position reads.

Shared by :mod:`litequant.quantize.passes.bias_correction` (mean input of each kernel tap) and
:mod:`litequant.quantize.passes.gptq` (input patches of each output position). Imports numpy only.
"""

from __future__ import annotations

import numpy as np


def padded_input(x: np.ndarray, kernel_hw: tuple[int, int], stride: tuple[int, int],
                 dilation: tuple[int, int], same_padding: bool) -> tuple[np.ndarray, int, int]:
    """A convolution's input as its kernel reads it, and its output size.

    Args:
        x: ``(height, width, channels)`` one input map.
        kernel_hw, stride, dilation: the convolution's geometry ``(rows, columns)``.
        same_padding: TFLite ``SAME`` padding (zeros, the extra row/column after), else
            ``VALID``.

    Returns:
        ``(padded, out_h, out_w)``: tap ``(i, j)`` of output ``(r, c)`` reads
        ``padded[r * stride_h + i * dilation_h, c * stride_w + j * dilation_w]``.
    """
    height, width = x.shape[:2]
    (kh, kw), (sh, sw), (dh, dw) = kernel_hw, stride, dilation
    extent_h, extent_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if not same_padding:
        return x, (height - extent_h) // sh + 1, (width - extent_w) // sw + 1
    out_h, out_w = -(-height // sh), -(-width // sw)
    pad_h = max((out_h - 1) * sh + extent_h - height, 0)
    pad_w = max((out_w - 1) * sw + extent_w - width, 0)
    return (np.pad(x, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2),
                       (0, 0))), out_h, out_w)


def input_patches(x: np.ndarray, kernel_hw: tuple[int, int], stride: tuple[int, int],
                  dilation: tuple[int, int], same_padding: bool,
                  max_positions: int | None = None) -> np.ndarray:
    """The input patch each output position of a convolution reads.

    Args:
        x, kernel_hw, stride, dilation, same_padding: as for :func:`padded_input`.
        max_positions: at most this many output positions, evenly spaced in raster order
            (``None``: all).

    Returns:
        ``(positions, kernel_h, kernel_w, channels)``, ``x``'s dtype, in raster order.
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel_hw, stride, dilation
    padded, out_h, out_w = padded_input(x, kernel_hw, stride, dilation, same_padding)
    positions = np.arange(out_h * out_w)
    if max_positions is not None and len(positions) > max_positions:
        positions = np.unique(np.linspace(0, len(positions) - 1, max_positions).round()
                              .astype(np.int64))
    rows, columns = np.divmod(positions, out_w)
    patches = np.empty((len(positions), kh, kw, x.shape[2]), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patches[:, i, j] = padded[rows * sh + i * dh, columns * sw + j * dw]
    return patches
