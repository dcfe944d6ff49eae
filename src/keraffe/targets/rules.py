"""Pieces the three profiles' rules are built from: geometry of a layer, ranges, the types a toolchain lists."""

from __future__ import annotations

from keraffe.caffe.proto import caffe_pb2 as pb
from keraffe.errors import KeraffeError
from keraffe.targets.profile import Finding


def finding(node, message: str, fix: str | None = None, fixable: bool | None = None) -> Finding:
    return Finding(node.name, node.type, message, fix, fixable)


def net_finding(message: str) -> Finding:
    return Finding(None, None, message)


def outside(value: int, low: int, high: int) -> bool:
    return not low <= value <= high


def conv_geometry(view, node):
    """The convolution's geometry, or None when its input shape is unknown."""
    from keraffe.caffe.shapes.conv import conv_geometry as geometry

    bottom = view.bottom(node)
    if bottom is None:
        return None
    try:
        return geometry(node.param, bottom)
    except KeraffeError:
        return None


def pool_geometry(view, node):
    from keraffe.caffe.shapes.pooling import pool_geometry as geometry

    bottom = view.bottom(node)
    if bottom is None or len(bottom) != 4:
        return None
    try:
        return geometry(node.param, bottom)
    except KeraffeError:
        return None


def is_depthwise(view, node) -> bool:
    """A convolution with one group per input channel (and as many outputs): what NPUs call depthwise."""
    geometry = conv_geometry(view, node)
    bottom = view.bottom(node)
    return geometry is not None and geometry.group > 1 and geometry.group == bottom[1] == geometry.num_output


def pool_method(node) -> str:
    return pb.PoolingParameter.PoolMethod.Name(node.param.pooling_param.pool)


def types_outside(view, accepted: frozenset[str], skip: frozenset[str] = frozenset()):
    """Each layer whose type the toolchain does not list."""
    for node in view.layers():
        if node.type not in accepted and node.type not in skip:
            yield node


def spatial_pairs(values) -> str:
    return "x".join(str(v) for v in values)


def global_chain_exists(node, input_hw, fits) -> bool:
    """Whether :mod:`keraffe.passes.chain_global_pooling` can write this global pooling as poolings ``fits`` takes."""
    from keraffe.passes.chain_global_pooling import is_global, plan_chain

    if not is_global(node.param, (1, 1) + tuple(input_hw)) or node.param.pooling_param.pool not in (
            pb.PoolingParameter.MAX, pb.PoolingParameter.AVE) or len(node.outputs) != 1:
        return False
    method = "max" if node.param.pooling_param.pool == pb.PoolingParameter.MAX else "ave"
    return plan_chain(tuple(input_hw), method, fits) is not None


def depthwise_fix(node) -> dict:
    """The finding arguments for a fork depthwise type: fixed by depthwise_as_grouped where keraffe knows it."""
    from keraffe.passes.depthwise_as_grouped import DEPTHWISE_ALIASES

    fixable = node.type in DEPTHWISE_ALIASES
    return {"fix": "depthwise_as_grouped" if fixable else None, "fixable": fixable}


def swallows_crops_only(view, node) -> bool:
    """Whether a Silence reads only the cut parts of crops (which slice_as_crop rewrites, Silence and all)."""
    from keraffe.passes.slice_as_crop import spatial_crop

    producers = [next((p for p in view.net.layers if t in p.outputs), None) for t in node.inputs]
    return all(p is not None and spatial_crop(view.net, p, view.consumers) is not None for p in producers)
