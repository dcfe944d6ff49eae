"""Caffe -> Keras 3: build a functional Keras model that computes what a Caffe net computes.

Each Caffe layer type has one handler, registered with :func:`caffe_layer` in
the module of its family (``conv``, ``pooling``, ...). :func:`convert_net` runs
the graph passes, checks that every layer type has a handler (listing all the
missing ones in one error), then calls the handlers in net order.
"""

from __future__ import annotations

from typing import Callable

from keraffe.caffe.net import CaffeNet, LayerNode, refuse_layer_types
from keraffe.caffe.shapes import has_rule
from keraffe.errors import UnsupportedLayerError
from keraffe.convert.registry import Registry

Handler = Callable[["CaffeToKerasContext", LayerNode], None]  # noqa: F821

FAMILIES = ("io", "activations", "conv", "pooling", "dense", "normalization", "tensor_ops", "resize", "detection",
            "recurrent")

HANDLERS: Registry[Handler] = Registry("Caffe -> Keras handler", __name__, FAMILIES)
caffe_layer = HANDLERS.register


def load_handlers() -> Registry[Handler]:
    """Every handler of this direction, its family modules imported on first use."""
    return HANDLERS.load()


def check_supported(net: CaffeNet) -> None:
    """Raise one error that lists every layer type of the net keraffe cannot convert to Keras.

    Passed to :func:`keraffe.caffe.net.load_net` as ``check_types``, so types
    without a shape rule and types without a handler come in the same error.
    """
    load_handlers()
    # Before shape inference a type needs a shape rule too; after it, layers the graph passes
    # made (keraffe.BatchNormScale) have their shapes already.
    refuse_layer_types(net, lambda node: node.kind in HANDLERS and (node.shapes is not None or has_rule(node.kind)),
                       "cannot convert to Keras", refuse_foreign_fields=True)


def model_outputs(net: CaffeNet):
    """The net's outputs; a net that silences all of them outputs what its Silence layers take.

    Caffe nets like colorization's end in a Silence layer so that Caffe does not
    print the result; their users read the silenced blob, which the Keras model returns.
    """
    if net.outputs:
        return net.outputs
    silenced = [t for node in net.layers if node.type == "Silence" for t in node.inputs]
    if not silenced:
        raise UnsupportedLayerError(f"{net.source}: the net has no output blobs")
    return silenced


def convert_net(net: CaffeNet, release_weights: bool = False):
    """Convert a loaded Caffe net; returns (keras.Model, TensorMap).

    ``release_weights=True`` hands the net's weight arrays to Keras layer by
    layer and drops them from the net (see CaffeToKerasContext): for callers
    that loaded the net only to convert it.
    """
    import keras

    from keraffe.convert.caffe_to_keras.context import CaffeToKerasContext, sanitize
    from keraffe.keras_graph import produced_by
    from keraffe.layout import NHWC, batch_first
    from keraffe.passes import run_caffe_to_keras_passes

    given = net
    net = run_caffe_to_keras_passes(net)
    if release_weights:
        # Layers a pass replaced (BatchNorm + Scale, fused) gave their arrays to the new layer.
        kept = {id(node) for node in net.layers}
        for node in given.layers:
            if id(node) not in kept:
                node.weights = None
    check_supported(net)
    ctx = CaffeToKerasContext(net, release_weights=release_weights)
    ctx.reserve_output_names(model_outputs(net))
    for tensor, (producer, fused_into) in net.fused.items():
        ctx.fused(tensor, producer, fused_into)
    for node in net.layers:
        HANDLERS.get(node.kind)(ctx, node)
        if release_weights:
            node.weights = None
    # Input layers' tops, and Parameter layers fed from outside (keraffe.caffe.net marks those inputs).
    inputs = [ctx.values[t].tensor for t in net.inputs]
    outputs = []
    for tensor in model_outputs(net):
        value = ctx.values[tensor]
        rank = len(net.shapes[tensor])
        # Images go out NHWC; other blobs in Caffe's order, batch first (a time-major blob stays batch-first).
        wanted = NHWC if rank == 4 and value.layout.perm[0] == 0 else batch_first(value.layout)
        if value.layout != wanted and not value.layout.detections:
            outputs.append(ctx.convert_layout(tensor, wanted))
            operation, call_index, output_index = produced_by(outputs[-1])
            entry = ctx.map[str(tensor)]
            entry.keras_layer, entry.keras_output, entry.keras_node = operation.name, output_index, call_index
            entry.layout = wanted
        else:
            outputs.append(value.tensor)
            entry = ctx.map[str(tensor)]
            if entry.keras_layer is None:
                # An output that aliases another tensor (Split, Concat of one, Permute): the model's output
                # is that tensor, so the map must name it for the output to be found.
                operation, call_index, output_index = produced_by(value.tensor)
                entry.keras_layer, entry.keras_output, entry.keras_node = operation.name, output_index, call_index
    model = keras.Model(inputs, outputs, name=sanitize(net.name or "caffe_net"))
    ctx.map.inputs = [str(t) for t in net.inputs]
    ctx.map.outputs = [str(t) for t in model_outputs(net)]
    return model, ctx.map
