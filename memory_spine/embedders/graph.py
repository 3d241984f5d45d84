"""The all-MiniLM-L6-v2 ONNX graph, written with ``onnx.helper`` instead of traced by torch.

The graph computes what sentence-transformers computes after tokenisation: BERT (6 layers, 12 heads, hidden
384), mean pooling over the attention mask and L2 normalisation. Its weights are not in the graph: every
initializer is *external data* pointing into ``model.safetensors`` (name, byte offset, length), so ONNX
Runtime reads the weights where they lie and the model is stored once.

This module is a developer tool: it needs the ``onnx`` package (the ``test`` extra) and is run only to
regenerate the graph shipped as ``minilm.onnx`` beside it::

    python -m memory_spine.embedders.graph /path/to/model.safetensors

The service itself never imports it (it needs only onnxruntime, see :mod:`memory_spine.embedders.onnx`).
tests/integration/test_embedder_agreement.py checks that the shipped file equals a fresh build and that its
vectors agree with sentence-transformers (cosine >= 0.9999, long inputs included).
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: The shipped graph, beside this module.
GRAPH_PATH = Path(__file__).with_name("minilm.onnx")
#: The name the graph's external data refers to; the runtime hands ONNX Runtime the file's bytes under it.
WEIGHTS_NAME = "model.safetensors"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "embedding"
OPSET = 17

LAYERS = 6
HEADS = 12
HIDDEN = 384
HEAD_DIM = HIDDEN // HEADS
EPS = 1e-12  # config.json's layer_norm_eps


def safetensors_index(path: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    """The byte offset where tensor data starts, and the header (name -> dtype, shape, data_offsets)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return 8 + n, header


def build(weights: Path) -> Any:
    """Return the ``onnx.ModelProto`` of the model whose weights are in ``weights`` (a safetensors file)."""
    from onnx import TensorProto, helper

    base, header = safetensors_index(weights)
    inits: list[Any] = []
    nodes: list[Any] = []

    def w(name: str) -> str:
        meta = header[name]
        if meta["dtype"] != "F32":
            raise ValueError(f"{name} is {meta['dtype']}, expected F32")
        start, end = meta["data_offsets"]
        t = TensorProto()
        t.name = name
        t.data_type = TensorProto.FLOAT
        t.dims.extend(meta["shape"])
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", WEIGHTS_NAME), ("offset", str(base + start)), ("length", str(end - start))):
            entry = t.external_data.add()
            entry.key, entry.value = k, v
        inits.append(t)
        return name

    def const(name: str, value: Any, dtype: Any = np.int64) -> str:
        inits.append(helper.make_tensor(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), *_flat(value, dtype)))
        return name

    counter = iter(range(1_000_000))

    def op(kind: str, inputs: list[str], **attrs: Any) -> str:
        out = f"{kind.lower()}_{next(counter)}"
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def layer_norm(x: str, prefix: str) -> str:
        return op("LayerNormalization", [x, w(f"{prefix}.weight"), w(f"{prefix}.bias")], axis=-1, epsilon=EPS)

    def dense(x: str, prefix: str) -> str:
        # x is [tokens, in]; the torch Linear weight is [out, in], which Gemm reads transposed without a copy.
        return op("Gemm", [x, w(f"{prefix}.weight"), w(f"{prefix}.bias")], transB=1)

    ids, mask, types = INPUT_NAMES
    bs = op("Shape", [ids])  # [batch, seq]
    seq = op("Gather", [bs, const("one_idx", 1)], axis=0)  # scalar seq
    positions = op("Range", [const("zero", 0), seq, const("step", 1)])
    emb = op(
        "Add",
        [
            op(
                "Add",
                [
                    op("Gather", [w("embeddings.word_embeddings.weight"), ids]),
                    op("Gather", [w("embeddings.token_type_embeddings.weight"), types]),
                ],
            ),
            op("Gather", [w("embeddings.position_embeddings.weight"), positions]),
        ],
    )
    x = op("Reshape", [layer_norm(emb, "embeddings.LayerNorm"), const("flat", [-1, HIDDEN])])  # [tokens, 384]

    # Additive attention mask, [batch, 1, 1, seq]: 0 where attended, the float32 minimum where padded (as
    # transformers does).
    maskf = op("Cast", [mask], to=TensorProto.FLOAT)
    bias = op(
        "Mul",
        [op("Sub", [const("onef", 1.0, np.float32), maskf]), const("neg", np.finfo(np.float32).min, np.float32)],
    )
    bias = op("Unsqueeze", [bias, const("axes12", [1, 2])])
    heads_shape = op("Concat", [bs, const("heads", [HEADS, HEAD_DIM])], axis=0)  # [batch, seq, 12, 32]
    scale = const("scale", 1.0 / np.sqrt(HEAD_DIM), np.float32)

    for i in range(LAYERS):
        p = f"encoder.layer.{i}"

        def split(t: str, perm: list[int]) -> str:
            return op("Transpose", [op("Reshape", [t, heads_shape])], perm=perm)

        q = split(dense(x, f"{p}.attention.self.query"), [0, 2, 1, 3])  # [b, h, s, d]
        k = split(dense(x, f"{p}.attention.self.key"), [0, 2, 3, 1])  # [b, h, d, s]
        v = split(dense(x, f"{p}.attention.self.value"), [0, 2, 1, 3])
        scores = op("Add", [op("Mul", [op("MatMul", [q, k]), scale]), bias])
        ctx = op("MatMul", [op("Softmax", [scores], axis=-1), v])
        ctx = op("Reshape", [op("Transpose", [ctx], perm=[0, 2, 1, 3]), "flat"])
        h = layer_norm(op("Add", [dense(ctx, f"{p}.attention.output.dense"), x]), f"{p}.attention.output.LayerNorm")
        inner = dense(h, f"{p}.intermediate.dense")
        # Exact (erf) GELU, BERT's "gelu": 0.5 * x * (1 + erf(x / sqrt(2))).
        gelu = op(
            "Mul",
            [
                op("Mul", [inner, const(f"half{i}", 0.5, np.float32)]),
                op(
                    "Add",
                    [
                        op("Erf", [op("Div", [inner, const(f"sqrt2_{i}", np.sqrt(2.0), np.float32)])]),
                        const(f"one{i}", 1.0, np.float32),
                    ],
                ),
            ],
        )
        x = layer_norm(op("Add", [dense(gelu, f"{p}.output.dense"), h]), f"{p}.output.LayerNorm")

    hidden = op("Reshape", [x, op("Concat", [bs, const("width", [HIDDEN])], axis=0)])  # [batch, seq, 384]
    m = op("Unsqueeze", [maskf, const("axis2", [2])])  # [batch, seq, 1]
    summed = op("ReduceSum", [op("Mul", [hidden, m]), const("axis1", [1])], keepdims=0)
    # sentence-transformers' Pooling clamps the count at 1e-9 and Normalize the norm at 1e-12.
    counts = op("Max", [op("ReduceSum", [m, "axis1"], keepdims=0), const("tiny", 1e-9, np.float32)])
    mean = op("Div", [summed, counts])
    norm = op("Max", [op("ReduceL2", [mean], axes=[-1], keepdims=1), const("eps", 1e-12, np.float32)])
    nodes.append(helper.make_node("Div", [mean, norm], [OUTPUT_NAME]))

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in INPUT_NAMES],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", HIDDEN])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="memory-spine")
    model.ir_version = 8
    # No onnx.checker here: it insists on finding the external file beside the graph; ONNX Runtime checks
    # the graph when the service loads it (and the agreement test runs it).
    return model


def _flat(value: Any, dtype: Any) -> tuple[list[int], list[Any]]:
    arr = np.asarray(value, dtype=dtype)
    return list(arr.shape), arr.reshape(-1).tolist()


def main(argv: list[str] | None = None) -> None:
    """Write the graph for the safetensors file named on the command line to :data:`GRAPH_PATH`."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m memory_spine.embedders.graph MODEL.safetensors")
    GRAPH_PATH.write_bytes(build(Path(args[0])).SerializeToString())
    print(f"wrote {GRAPH_PATH} ({GRAPH_PATH.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
