"""Activations, as layers (Activation, ReLU, LeakyReLU, PReLU, ELU, Softmax) and as layers' ``activation``.

Every keras.activations function that Caffe can compute exactly is built from
the target's layer types: ReLU6 is one layer for OpenCV, Clip(0, 6) for BVLC
master, and ReLU(x) - ReLU(x - 6) in Caffe 1.0 (exact for x <= 6; above 6 the
result is 6 up to the rounding of x - 6). Functions Caffe cannot compute exactly (erf
GELU, ...) are refused, never approximated.
"""

from __future__ import annotations

import math

import numpy as np

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.errors import ConversionError
from keraffe.host_memory import weight_array
from keraffe.passes.drafting import set_power

#: Activations whose output is never negative (lets later zero padding fold into MAX pooling).
NON_NEGATIVE = frozenset({"relu", "relu6", "sigmoid", "softmax", "softplus", "exponential", "hard_sigmoid"})

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def activation_name(function) -> str:
    import keras

    if function is None:
        return "linear"
    name = keras.activations.serialize(function)
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    return {"swish": "silu", "hard_swish": "hard_silu"}.get(str(name), str(name))


class ActivationBuilder:
    """Adds the Caffe layers of one activation from ``bottom`` to ``top``."""

    def __init__(self, ctx, base: str, bottom: str, top: str, softmax_axis: int = 1, final_name: str | None = None):
        self.ctx = ctx
        self.base = base
        self.bottom = bottom
        self.top = top
        self.softmax_axis = softmax_axis
        #: Name of the last Caffe layer; a standalone activation layer keeps its Keras name.
        self.final_name = final_name
        self.layers: list[str] = []

    def _layer(self, type_name, part, bottoms, final=False):
        if final:
            name = self.final_name or self.ctx.unique(f"{self.base}/{part}")
            top = self.top
        else:
            name = top = self.ctx.unique(f"{self.base}/{part}")
        layer = self.ctx.add(type_name, name, bottoms, [top])
        self.layers.append(type_name)
        return layer

    def power(self, bottom, part, final=False, power=1.0, scale=1.0, shift=0.0):
        layer = self._layer("Power", part, [bottom], final)
        set_power(layer.power_param, power, scale, shift)
        return layer.top[0]

    def simple(self, type_name, bottom, part, final=False):
        return self._layer(type_name, part, [bottom], final).top[0]

    def product(self, a, b, part, final=False):
        layer = self._layer("Eltwise", part, [a, b], final)
        layer.eltwise_param.operation = layer.eltwise_param.PROD
        return layer.top[0]

    def clipped_relu(self, bottom, part, limit, final=False, slope=0.0):
        """min(ReLU(x), limit): ReLU(x) - ReLU(x - limit), exact wherever x <= limit."""
        positive = self._layer("ReLU", f"{part}_relu", [bottom])
        if slope:
            positive.relu_param.negative_slope = slope
        excess = self.power(bottom, f"{part}_excess", shift=-limit)
        excess = self.simple("ReLU", excess, f"{part}_excess_relu")
        layer = self._layer("Eltwise", part, [positive.top[0], excess], final)
        layer.eltwise_param.coeff.extend([1.0, -1.0])
        return layer.top[0]

    def relu6(self, bottom, part, final=False):
        target = self.ctx.target
        if target.allows("ReLU6"):
            return self.simple("ReLU6", bottom, part, final)
        if target.allows("Clip"):
            layer = self._layer("Clip", part, [bottom], final)
            layer.clip_param.min, layer.clip_param.max = 0.0, 6.0
            return layer.top[0]
        return self.clipped_relu(bottom, part, 6.0, final)

    def clip(self, bottom, part, low, high, final=False):
        """x clipped to [low, high]: Caffe's Clip where the target has it, else low + min(ReLU(x - low), high - low)."""
        if self.ctx.target.allows("Clip"):
            layer = self._layer("Clip", part, [bottom], final)
            layer.clip_param.min, layer.clip_param.max = float(low), float(high)
            return layer.top[0]
        if low == 0.0:
            return self.clipped_relu(bottom, part, float(high), final)
        shifted = self.power(bottom, f"{part}_shift", shift=-float(low))
        clipped = self.clipped_relu(shifted, f"{part}_relu", float(high) - float(low))
        return self.power(clipped, part, final, shift=float(low))

    def hard_sigmoid(self, bottom, part, final=False):
        shifted = self.power(bottom, f"{part}_shift", shift=3.0)
        clipped = self.relu6(shifted, f"{part}_relu6")
        return self.power(clipped, part, final, scale=1.0 / 6.0)

    def build(self, name: str, config: dict | None = None) -> str | None:
        """Add the layers; return the top (None when the activation is the identity)."""
        if name == "linear":
            return None
        if name in _SINGLE_LAYER:
            type_name, part = _SINGLE_LAYER[name]
            return self.simple(type_name, self.bottom, part, final=True)
        build = getattr(self, f"_build_{name}", None)
        if build is None:
            raise ConversionError(
                f"activation '{name}' has no exact Caffe form (Caffe has no erf, no arbitrary elementwise code); "
                "keraffe refuses to approximate it"
            )
        return build(self.bottom, config or {})

    # One method per activation that takes more than one Caffe layer or a parameter.

    def _build_relu6(self, bottom, config):
        return self.relu6(bottom, "relu6", final=True)

    def _build_leaky_relu(self, bottom, config):
        layer = self._layer("ReLU", "leaky_relu", [bottom], final=True)
        layer.relu_param.negative_slope = config.get("negative_slope", 0.2)
        return layer.top[0]

    def _build_selu(self, bottom, config):
        layer = self._layer("ELU", "elu", [bottom])
        layer.elu_param.alpha = SELU_ALPHA
        return self.power(layer.top[0], "selu", final=True, scale=SELU_SCALE)

    def _build_softmax(self, bottom, config):
        layer = self._layer("Softmax", "softmax", [bottom], final=True)
        if self.softmax_axis != 1:
            layer.softmax_param.axis = self.softmax_axis
        return layer.top[0]

    def _build_hard_sigmoid(self, bottom, config):
        return self.hard_sigmoid(bottom, "hard_sigmoid", final=True)

    def _build_hard_silu(self, bottom, config):
        gate = self.hard_sigmoid(bottom, "hard_sigmoid")
        return self.product(bottom, gate, "hard_silu", final=True)

    def _build_silu(self, bottom, config):
        if self.ctx.target.allows("Swish"):
            return self.simple("Swish", bottom, "silu", final=True)
        gate = self.simple("Sigmoid", bottom, "sigmoid")
        return self.product(bottom, gate, "silu", final=True)

    def _build_softsign(self, bottom, config):
        magnitude = self.simple("AbsVal", bottom, "abs")
        inverse = self.power(magnitude, "inverse", power=-1.0, shift=1.0)
        return self.product(bottom, inverse, "softsign", final=True)

    def _build_gelu_tanh(self, bottom, config):
        """Keras' approximate GELU: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), no erf needed."""
        cube = self.power(bottom, "cube", power=3.0)
        inner = self._layer("Eltwise", "inner", [bottom, cube])
        inner.eltwise_param.coeff.extend([1.0, 0.044715])
        gate = self.simple("TanH", self.power(inner.top[0], "inner_scaled", scale=math.sqrt(2.0 / math.pi)), "tanh")
        half = self.power(gate, "half_gate", scale=0.5, shift=0.5)
        return self.product(bottom, half, "gelu", final=True)

    def _build_mish(self, bottom, config):
        soft = self.simple("BNLL", bottom, "softplus")
        gate = self.simple("TanH", soft, "tanh")
        return self.product(bottom, gate, "mish", final=True)


#: Activations that are one Caffe layer with no parameter: Keras name -> (Caffe type, the layer's name part).
_SINGLE_LAYER = {"relu": ("ReLU", "relu"), "elu": ("ELU", "elu"), "sigmoid": ("Sigmoid", "sigmoid"),
                 "tanh": ("TanH", "tanh"), "softplus": ("BNLL", "softplus"), "exponential": ("Exp", "exp")}


def emit_activation(ctx, operation, call, keras_tensor, base: str, bottom_value, name: str, config=None,
                    softmax_axis: int | None = None, standalone: bool = True):
    """Emit an activation and record the Keras output it computes; returns the value.

    ``standalone`` activations (an Activation or ReLU layer) name their last
    Caffe layer after the Keras layer; a layer's fused ``activation`` adds
    layers named "<layer>/<activation>" after the layer's own.
    """
    from keraffe.convert.keras_to_caffe.context import CaffeValue

    axis = softmax_axis if softmax_axis is not None else _channel_axis(bottom_value)
    builder = ActivationBuilder(ctx, base, bottom_value.blob, base, axis, final_name=base if standalone else None)
    top = builder.build(name, config)
    if top is None:
        value = CaffeValue(bottom_value.blob, bottom_value.layout, bottom_value.shape, bottom_value.non_negative)
        ctx.alias(keras_tensor, value)
        return value
    if len(builder.layers) > 1:
        ctx.note(operation, builder.layers, f"{name} built from Caffe {'/'.join(sorted(set(builder.layers)))}")
    return ctx.emit(operation, call, 0, keras_tensor, top, bottom_value.layout, non_negative=name in NON_NEGATIVE)


def _channel_axis(value) -> int:
    return value.layout.perm[-1]


# ------------------------------------------------------------------ layer classes


@keras_layer("Activation")
def activation(ctx, operation, call):
    name = activation_name(operation.activation)
    value = ctx.value(call.inputs[0])
    emit_activation(ctx, operation, call, call.outputs[0], ctx.layer_name(operation, call), value, name)


@keras_layer("ReLU")
def relu_layer(ctx, operation, call):
    """Keras' ReLU: x where x > threshold (else 0), clipped to max_value, minus slope * ReLU(threshold - x).

    With a threshold the kept values jump from 0 to the threshold, which no
    sum of ReLUs gives: Caffe's Threshold layer makes the 0/1 mask (x > t, as
    Keras compares) and an Eltwise product applies it.
    """
    value = ctx.value(call.inputs[0])
    base = ctx.layer_name(operation, call)
    max_value = operation.max_value
    slope = float(operation.negative_slope)
    threshold = float(operation.threshold)
    out = call.outputs[0]
    if threshold == 0.0 and slope == 0.0 and max_value is None:
        emit_activation(ctx, operation, call, out, base, value, "relu")
        return
    if threshold == 0.0 and slope == 0.0 and float(max_value) == 6.0:
        emit_activation(ctx, operation, call, out, base, value, "relu6")
        return
    builder = ActivationBuilder(ctx, base, value.blob, base, final_name=base)
    if threshold == 0.0:
        if max_value is not None:
            top = builder.clipped_relu(value.blob, "relu", float(max_value), final=True, slope=slope)
        else:
            layer = builder._layer("ReLU", "relu", [value.blob], final=True)
            layer.relu_param.negative_slope = slope
            top = layer.top[0]
    else:
        mask = builder._layer("Threshold", "above", [value.blob])
        mask.threshold_param.threshold = threshold
        top = builder.product(value.blob, mask.top[0], "kept", final=max_value is None and slope == 0.0)
        if max_value is not None:
            top = builder.clipped_relu(top, "clip", float(max_value), final=slope == 0.0)
        if slope:
            below = builder.power(value.blob, "below", scale=-1.0, shift=threshold)
            below = builder.simple("ReLU", below, "below_relu")
            leak = builder._layer("Eltwise", "leak", [top, below], final=True)
            leak.eltwise_param.coeff.extend([1.0, -slope])
            top = leak.top[0]
    ctx.note(operation, builder.layers, "ReLU with threshold/max_value/negative_slope built from Caffe 1.0 layers")
    ctx.emit(operation, call, 0, out, top, value.layout, non_negative=slope == 0.0)


@keras_layer("LeakyReLU")
def leaky_relu(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    emit_activation(ctx, operation, call, call.outputs[0], ctx.layer_name(operation, call), value, "leaky_relu",
                    {"negative_slope": float(operation.negative_slope)})


@keras_layer("ELU")
def elu(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    layer = ctx.add("ELU", name, [value.blob])
    layer.elu_param.alpha = float(operation.alpha)
    ctx.emit(operation, call, 0, call.outputs[0], name, value.layout)


@keras_layer("Softmax")
def softmax(ctx, operation, call):
    value = ctx.value(call.inputs[0])
    axis = operation.axis
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise ConversionError("softmax over several axes has no Caffe layer")
        axis = axis[0]
    rank = len(value.shape)
    caffe_axis = value.layout.perm[axis % rank] if value.layout.flattened_from is None else 1
    emit_activation(ctx, operation, call, call.outputs[0], ctx.layer_name(operation, call), value, "softmax",
                    softmax_axis=caffe_axis)


@keras_layer("PReLU")
def prelu(ctx, operation, call):
    """Caffe's PReLU per channel or shared; any other sharing as a PReLU per element of the flattened blob.

    Keras' default PReLU has one alpha per element. Reshaped to (N, C*H*W),
    each element is its own Caffe channel, so a per-channel PReLU with the
    alphas in Caffe's order computes it exactly; a second Reshape restores the
    blob's shape.
    """
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    alpha = weight_array(operation.alpha)
    rank = len(value.shape)
    keras_channel = rank - 1
    shared = set(operation.shared_axes or [])
    if shared >= set(range(1, rank)):
        layer = ctx.add("PReLU", name, [value.blob])
        layer.prelu_param.channel_shared = True
        ctx.weights[name] = [alpha.reshape(())]
    elif shared == set(range(1, rank)) - {keras_channel} and value.layout.perm[keras_channel] == 1:
        ctx.add("PReLU", name, [value.blob])
        ctx.weights[name] = [alpha.reshape(-1)]
    else:
        keras_shape = tuple(int(d) for d in call.inputs[0].shape[1:])
        per_element = value.layout.to_caffe(np.broadcast_to(alpha, keras_shape)[None])[0]
        bottom = value.blob
        if rank > 2:
            flat = ctx.add("Reshape", ctx.unique(f"{name}/flat"), [value.blob])
            flat.reshape_param.shape.dim.extend([0, -1])
            bottom = flat.top[0]
        top = name if rank == 2 else ctx.unique(f"{name}/per_element")
        ctx.add("PReLU", top, [bottom])
        ctx.weights[top] = [np.ascontiguousarray(per_element.reshape(-1))]
        if rank > 2:
            back = ctx.add("Reshape", name, [top])
            back.reshape_param.shape.dim.extend((0,) + tuple(value.shape[1:]))
            ctx.note(operation, ["Reshape", "PReLU", "Reshape"],
                     f"PReLU with shared_axes {sorted(shared)}: one Caffe channel per element")
    ctx.emit(operation, call, 0, call.outputs[0], name, value.layout)
