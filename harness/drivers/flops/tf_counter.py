r"""FLOPs of a Keras model (TensorFlow backend) measured by the TensorFlow profiler.

Method (``environment.md``): trace ``model(x, training=False)`` into a concrete function with a fully known
input shape, freeze it (``convert_variables_to_constants_v2``), run
``tf.compat.v1.profiler.profile(graph, options=ProfileOptionBuilder.float_operation())`` and **step into**
every ``PartitionedCall`` / ``StatefulPartitionedCall`` body (Keras hides some ops, e.g. grouped convolutions,
in nested functions, which the profiler would otherwise count as 0): each body is re-imported as a graph with
the caller's input shapes and profiled the same way, recursively.

What TensorFlow counts (its registered ``flops`` statistics; **FLOPs = 2 × MACs** for the dense ops):

* dense: ``Conv2D`` (= 2 · out elements · k_h k_w · C_in/groups), ``DepthwiseConv2dNative``, ``MatMul``,
  ``BatchMatMul{,V2,V3}`` — these are compared *exactly* with ``2 × analytic MACs``;
* elementwise: ``Add``, ``AddV2``, ``Mul``, ``Sub``, ``RealDiv``, ``Rsqrt``, ``Mean``, ``Sum``, ``MaxPool``,
  ``Softmax``, ``Maximum``, ``BiasAdd``, ... (one per element, roughly; reported, not asserted);
* **not counted (0):** ``Einsum`` (no statistics registered: use matmul or add the analytic count), ``Relu``,
  ``Sigmoid``, ``Exp``, ``FusedBatchNormV3``, ``Pad``, ``Reshape``/``Transpose``; anything inside control flow
  (``If``/``While``) bodies.

The per-op-type breakdown uses the same registered statistics (``ops.get_stats_for_node_def``) node by node;
its total equals the profiler's ``total_float_ops`` (checked on every call).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

#: TF op types whose registered FLOPs are 2 × MACs of dense linear algebra.
DENSE_OPS: frozenset[str] = frozenset(
    {"Conv2D", "DepthwiseConv2dNative", "Conv3D", "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"}
)
#: Ops that do arithmetic but have no registered FLOP statistics (the profiler counts them as 0).
UNCOUNTED_ARITH_OPS: frozenset[str] = frozenset(
    {
        "Einsum",
        "Relu",
        "Relu6",
        "Sigmoid",
        "Exp",
        "Tanh",
        "FusedBatchNormV3",
        "FusedBatchNorm",
        "Max",
        "Min",
        "SelectV2",
        "Sqrt",
        "Erf",
        "Softplus",
        "Cumsum",
    }
)
_CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")


@dataclass
class TFCount:
    """One profiled graph: FLOPs (2 × MACs for dense ops), by op type, plus the uncounted ops seen."""

    total_flops: int
    by_op: dict[str, int] = field(default_factory=dict)
    uncounted: dict[str, int] = field(
        default_factory=dict
    )  # op type -> number of nodes (arithmetic, 0 FLOPs)
    profiler_total: int = 0
    functions_entered: int = 0

    @property
    def dense_flops(self) -> int:
        """FLOPs of the dense ops (conv, matmul): compare with ``2 × analytic MACs``."""
        return sum(v for k, v in self.by_op.items() if k in DENSE_OPS)

    @property
    def elementwise_flops(self) -> int:
        return self.total_flops - self.dense_flops

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_flops": self.total_flops,
            "dense_flops": self.dense_flops,
            "elementwise_flops": self.elementwise_flops,
            "by_op": dict(self.by_op),
            "uncounted": dict(self.uncounted),
            "profiler_total": self.profiler_total,
            "functions_entered": self.functions_entered,
        }


def _profile_graph(graph: Any) -> int:
    import tensorflow as tf

    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    opts = builder(builder.float_operation()).with_empty_output().build()
    prof = tf.compat.v1.profiler.profile(graph, options=opts)
    return int(prof.total_float_ops) if prof is not None else 0


def _count_graph(graph: Any, library: dict[str, Any], result: TFCount, mult: int, depth: int) -> None:
    """Add the FLOPs of ``graph`` (and of every called function body, recursively) to ``result``."""
    from tensorflow.python.framework import ops
    from tensorflow.python.framework.function_def_to_graph import function_def_to_graph

    if depth > 32:
        raise RecursionError("function call nesting deeper than 32 while counting FLOPs")
    node_total = 0
    for op in graph.get_operations():
        t = op.type
        try:
            stats = ops.get_stats_for_node_def(graph, op.node_def, "flops")
            v = int(stats.value) if stats.value is not None else 0
        except ValueError:
            v = 0
        if v:
            result.by_op[t] = result.by_op.get(t, 0) + mult * v
            node_total += v
        elif t in UNCOUNTED_ARITH_OPS:
            result.uncounted[t] = result.uncounted.get(t, 0) + mult
        if t in _CALL_OPS:
            fname = op.get_attr("f").name
            fdef = library.get(fname)
            if fdef is None:
                continue
            shapes = [inp.shape for inp in op.inputs]
            body = function_def_to_graph(fdef, input_shapes=shapes)
            result.functions_entered += 1
            _count_graph(body, library, result, mult, depth + 1)
    prof = _profile_graph(graph)
    if prof != node_total:
        raise AssertionError(f"TF profiler total {prof} != node-by-node registered statistics {node_total}")
    result.profiler_total += mult * prof
    result.total_flops += mult * node_total


def _freeze(cf: Any) -> tuple[Any, dict[str, Any], str]:
    """Frozen copy of a concrete function as a plain ``tf.Graph`` (+ its function library, input name)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(cf)
    gd = frozen.graph.as_graph_def()
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(gd, name="")
    library = {f.signature.name: f for f in gd.library.function}
    return graph, library, frozen.inputs[0].name


def _complete_shapes(graph: Any, feed: dict[str, Any]) -> int:
    """Give every tensor of ``graph`` a static shape by running it once on ``feed`` (a v1 Session).

    Needed because the outputs of ``(Stateful)PartitionedCall`` nodes have unknown shapes, which would make
    the registered statistics of every later op (e.g. the classifier's ``MatMul``) count 0.
    """
    import tensorflow as tf

    missing = [
        t
        for op in graph.get_operations()
        for t in op.outputs
        if not t.shape.is_fully_defined() and t.dtype not in (tf.resource, tf.variant)
    ]
    if not missing:
        return 0
    with tf.compat.v1.Session(graph=graph) as sess:
        values = sess.run(missing, feed_dict=feed)
    for t, v in zip(missing, values):
        t.set_shape(v.shape)
    return len(missing)


def count_tf_function(fn: Any, *specs: Any) -> TFCount:
    """Profile a ``tf.function`` of one float32 input traced with ``specs[0]`` (fully defined)."""
    import numpy as np

    cf = fn.get_concrete_function(*specs)
    graph, library, in_name = _freeze(cf)
    _complete_shapes(graph, {in_name: np.zeros(specs[0].shape, np.float32)})
    result = TFCount(0)
    _count_graph(graph, library, result, 1, 0)
    return result


def count_keras(model: Any, input_shape: tuple[int, ...], *, training: bool = False) -> TFCount:
    """Profile ``model(x, training=...)`` for an NHWC input of ``input_shape`` (batch included).

    Requires the TensorFlow backend. Import torch before calling this in a process that also uses torch.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=training))
    return count_tf_function(fn, tf.TensorSpec(input_shape, tf.float32))
