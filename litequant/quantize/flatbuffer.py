"""Reading and rewriting ``.tflite`` flatbuffers: the helpers every pass shares.

Models are ai-edge-litert's mutable object tree (``ModelT``, :func:`read_model`), written back
with :func:`model_bytes`. Imports numpy and ai-edge-litert's flatbuffer tools only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: TFLite ``TensorType`` values.
FLOAT32, INT32, INT64, INT8 = 0, 2, 4, 9
#: TFLite ``Padding.SAME``.
PADDING_SAME = 0
#: The ops whose constant weights the passes rewrite.
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def read_model(model_bytes: bytes):
    """A ``.tflite`` flatbuffer as ai-edge-litert's mutable object tree (``ModelT``)."""
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))


def op_name(model, op) -> str:
    """The builtin operator name (``CONV_2D``, ``ADD``, ...) of a flatbuffer op."""
    from ai_edge_litert import schema_py_generated as schema

    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    names = {v: k for k, v in schema.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    return names.get(builtin, str(builtin))


def tensor_name(tensor) -> str:
    """A flatbuffer tensor's name as ``str``."""
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name)


def weighted_ops(model) -> list[tuple[str, Any]]:
    """``(op name, op)`` of every weight op of subgraph 0 in execution order."""
    graph = model.subgraphs[0]
    return [(name, op) for op in graph.operators
            if (name := op_name(model, op)) in WEIGHT_OPS]


def matched_weight_ops(quantized, reference) -> list[tuple[str, Any, Any]]:
    """``(op name, op of quantized, op of reference)`` for the weight ops of two conversions of
    the same SavedModel (e.g. int8 and float32), which come in the same order.

    Raises:
        ValueError: the two models do not have the same weight ops.
    """
    q_ops = weighted_ops(quantized)
    f_ops = weighted_ops(reference)
    if [n for n, _ in q_ops] != [n for n, _ in f_ops]:
        raise ValueError(f"the quantized and float32 models have different weight ops "
                         f"({len(q_ops)} against {len(f_ops)})")
    return [(name, q_op, f_op) for (name, q_op), (_, f_op) in zip(q_ops, f_ops, strict=True)]


def buffer_array(model, tensor, dtype) -> np.ndarray:
    """A constant tensor's data as a ``dtype`` array of the tensor's shape (read-only view)."""
    data = model.buffers[tensor.buffer].data
    if data is None:
        raise ValueError(f"tensor {tensor_name(tensor)} has no constant data")
    return np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=dtype).reshape(
        tuple(tensor.shape))


def model_bytes(model) -> bytes:
    """A ``ModelT`` object tree serialised back to ``.tflite`` bytes."""
    from ai_edge_litert.tools import flatbuffer_utils

    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def requantize_bias(model, bias, factors: np.ndarray) -> None:
    """Put an ``int32`` bias on new steps: scale ``input_scale * weight_scale`` times ``factors``
    (per channel, or one for all; the real values stay), for a new weight or input scale.
    Anything but a per-channel-quantized ``int32`` bias of matching length is left alone."""
    params = bias.quantization
    if bias.type != INT32 or params is None or params.scale is None:
        return
    old = np.asarray(params.scale, dtype=np.float64)
    factors = np.asarray(factors, dtype=np.float64)
    if factors.ndim == 0:
        factors = np.full(old.shape, float(factors))
    if factors.shape != old.shape:
        return
    new = old * factors
    values = buffer_array(model, bias, np.int32).astype(np.float64) * old
    safe = np.where(new > 0, new, 1.0)
    ints = np.clip(np.round(values / safe), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
    model.buffers[bias.buffer].data = np.frombuffer(ints.tobytes(), dtype=np.uint8)
    params.scale = new.astype(np.float32).tolist()
    params.zeroPoint = [0] * len(new)


def buffer_span(model_bytes_: bytes | bytearray, buffer: int) -> tuple[int, int]:
    """``(start, length)`` in bytes of constant buffer ``buffer``'s data inside the serialised
    model, so the data can be overwritten in place without re-serialising the whole model.

    Raises:
        ValueError: the buffer has no data inside the flatbuffer (empty, or stored after it).
    """
    from ai_edge_litert import schema_py_generated as schema

    entry = schema.Model.GetRootAs(model_bytes_, 0).Buffers(buffer)
    field = entry._tab.Offset(4)  # Buffer.data
    if field == 0:
        raise ValueError(f"buffer {buffer} has no data in the flatbuffer")
    return entry._tab.Vector(field), entry._tab.VectorLen(field)
