"""LSTM, GRU, SimpleRNN, Bidirectional and TimeDistributed.

Caffe's recurrent layers read time-major (T, N, ...) sequences, a
sequence-continuation input ``cont`` (T, N) and, with ``expose_hidden``, the
initial states; they write the sequence and, with ``expose_hidden``, the final
states. keraffe makes ``cont`` (all ones) and the zero initial states inside
the net with one DummyData layer, so the deploy net keeps its single input, and
with ``expose_hidden`` Caffe carries no state from one forward pass to the
next: a stateless Keras layer, exactly.

* ``LSTM`` with Keras' default activations (tanh, sigmoid) is Caffe's LSTM:
  the gates reordered from Keras' (i, f, c, o) to Caffe's (i, f, o, g).
* ``SimpleRNN`` (tanh) returning its last state is Caffe's RNN: its final
  hidden state is the Keras output; Caffe's extra output layer
  (o = tanh(W_ho h + b_o)) is left unread.
* Everything else Caffe's recurrent layers cannot compute exactly (GRU, which
  Caffe lacks; other activations; a whole SimpleRNN sequence, which Caffe's RNN
  only gives through its extra tanh; targets without LSTM or DummyData) is
  unrolled over the fixed sequence length with Caffe 1.0 layers: one
  InnerProduct projects every step's input at once, and each step's gates are
  InnerProduct, Eltwise and the activations' layers.

The export report says which was chosen. ``go_backwards`` reverses the time
axis (single-step Slice and a reversed Concat); Bidirectional runs both
directions and merges them as Keras does. TimeDistributed folds time into the
batch (a Reshape), converts its layer there, and unfolds the result.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keraffe.convert.keras_to_caffe import keras_layer
from keraffe.convert.keras_to_caffe.activations import ActivationBuilder, activation_name
from keraffe.convert.keras_to_caffe.building import concat, eltwise, move_axis, pieces, reshape, reverse_axis, scaled
from keraffe.convert.keras_to_caffe.context import CaffeValue
from keraffe.errors import ConversionError
from keraffe.host_memory import weight_array
from keraffe.layout import Layout, identity

#: A time-major (T, N, H) blob holding a Keras (N, T, H) sequence.
TIME_MAJOR = Layout((1, 0, 2))


@dataclasses.dataclass
class RecurrentResult:
    """What one recurrent layer computed: its output (sequence or last step) and its final states."""

    output: CaffeValue
    #: The final states as (N, H) blobs, in Keras' order (h, then c for an LSTM).
    states: list[str]
    #: Per-sample sequence outputs are in processing order (reversed in time for go_backwards), as Keras' are.
    sequence: bool


# ------------------------------------------------------------------ the layers


@keras_layer("LSTM", "GRU", "SimpleRNN")
def recurrent(ctx, operation, call):
    _refuse_unconvertible(operation, call)
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    result = run_recurrent(ctx, operation, value, name, operation)
    _emit_result(ctx, operation, call, result, 0)


@keras_layer("Bidirectional")
def bidirectional(ctx, operation, call):
    """Both directions (the backward one over the reversed sequence), merged as Keras merges them."""
    _refuse_unconvertible(operation, call)
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    forward = run_recurrent(ctx, operation.forward_layer, value, f"{name}/forward", operation)
    backward = run_recurrent(ctx, operation.backward_layer, value, f"{name}/backward", operation)
    forward_out, backward_out = forward.output, backward.output
    if backward.sequence:
        backward_out = _in_time_order(ctx, f"{name}/backward", backward_out)
    mode = operation.merge_mode
    states = forward.states + backward.states
    if mode is None:
        ctx.emit(operation, call, 0, call.outputs[0], forward_out.blob, forward_out.layout)
        ctx.emit(operation, call, 1, call.outputs[1], backward_out.blob, backward_out.layout)
        _emit_states(ctx, operation, call, states, 2)
        return
    layout = forward_out.layout
    blobs = [forward_out.blob, ctx.blob_in(backward_out, layout, name)]
    if mode == "concat":
        concat(ctx, name, blobs, layout.perm[len(layout.perm) - 1], name)
    elif mode in ("sum", "ave"):
        eltwise(ctx, name, blobs, "sum", coeff=[0.5, 0.5] if mode == "ave" else None)
    elif mode == "mul":
        eltwise(ctx, name, blobs, "prod")
    else:
        raise ConversionError(f"Bidirectional merge_mode {mode!r} is not converted")
    ctx.emit(operation, call, 0, call.outputs[0], name, layout)
    _emit_states(ctx, operation, call, states, 1)


@keras_layer("TimeDistributed")
def time_distributed(ctx, operation, call):
    """The inner layer over (N * T, ...): time folded into the batch by a Reshape, and unfolded after."""
    from keraffe.convert.keras_to_caffe import HANDLERS, operation_kind
    from keraffe.keras_graph import detached_call

    inner = operation.layer
    kind = operation_kind(inner)
    value = ctx.value(call.inputs[0])
    name = ctx.layer_name(operation, call)
    rank = len(value.shape)
    keras_shape = value.layout.keras_shape(value.shape) if value.layout.flattened_from is None else None
    if keras_shape is None or rank < 3:
        raise ConversionError("TimeDistributed needs a (batch, time, ...) tensor")
    n, t = keras_shape[0], keras_shape[1]
    blob = ctx.blob_in(value, identity(rank), name)
    folded = reshape(ctx, ctx.unique(f"{name}/fold_time"), blob, [n * t] + list(keras_shape[2:]))
    inner_call = detached_call(inner, [(n * t,) + tuple(keras_shape[2:])], dtype=call.inputs[0].dtype)
    ctx.set_value(inner_call.inputs[0], CaffeValue(folded, identity(rank - 1), (n * t,) + tuple(keras_shape[2:]),
                                                   value.non_negative))
    saved = ctx.operation
    ctx.scope.append(name)
    try:
        ctx.operation = inner
        if kind in HANDLERS:
            HANDLERS.get(kind)(ctx, inner, inner_call)
        else:
            _inline(ctx, inner, inner_call)
    finally:
        ctx.scope.pop()
        ctx.operation = saved
    result = ctx.value(inner_call.outputs[0])
    out_rank = len(result.shape)
    out_keras = result.layout.keras_shape(result.shape) if result.layout.flattened_from is None else \
        (result.shape[0], int(np.prod(result.layout.flattened_from)))
    flat = ctx.blob_in(result, identity(out_rank), name)
    reshape(ctx, name, flat, [n, t] + list(out_keras[1:]))
    ctx.note(operation, [], f"time folded into the batch around {inner.name} ({type(inner).__name__})")
    ctx.emit(operation, call, 0, call.outputs[0], name, identity(out_rank + 1), non_negative=result.non_negative)


def _inline(ctx, layer, call):
    """A layer without a handler, over the folded batch: its call traced and converted like a composite's."""
    from keraffe.convert.keras_to_caffe import convert_graph
    from keraffe.errors import GraphError
    from keraffe.keras_graph import trace

    try:
        graph = trace(call)
    except GraphError as error:
        raise ConversionError(f"TimeDistributed over a layer with no handler: {error}") from None
    for inner_input, tensor in zip(graph.inputs, call.inputs):
        ctx.alias(inner_input, ctx.value(tensor))
    problems = convert_graph(ctx, graph)
    if problems:
        raise ConversionError("its layer does not convert:\n" + "\n".join(problems))
    ctx.alias(call.outputs[0], ctx.value(graph.outputs[0]))


def _refuse_unconvertible(operation, call):
    layers = [operation.forward_layer, operation.backward_layer] if hasattr(operation, "forward_layer") else [operation]
    if len(call.inputs) > 1:
        raise ConversionError("an RNN given initial_state is not converted: Caffe's initial states would be net "
                              "inputs")
    for layer in layers:
        if getattr(layer, "stateful", False):
            raise ConversionError("a stateful RNN carries its state from one batch to the next; a Caffe net "
                                  "converted from it would not")


def _emit_result(ctx, operation, call, result: RecurrentResult, first: int):
    ctx.emit(operation, call, first, call.outputs[first], result.output.blob, result.output.layout)
    _emit_states(ctx, operation, call, result.states, first + 1)


def _emit_states(ctx, operation, call, states, first):
    for index, blob in enumerate(states, start=first):
        if index < len(call.outputs):
            ctx.emit(operation, call, index, call.outputs[index], blob, identity(2))


def _in_time_order(ctx, name, sequence: CaffeValue) -> CaffeValue:
    """A batch-major or time-major sequence reversed along its time axis."""
    time_axis = sequence.layout.perm[1]
    blob = reverse_axis(ctx, f"{name}/in_time_order", sequence.blob, time_axis, sequence.shape[time_axis])
    return CaffeValue(blob, sequence.layout, sequence.shape)


# ------------------------------------------------------------------ one direction


def run_recurrent(ctx, layer, value: CaffeValue, name: str, reported) -> RecurrentResult:
    """Convert one LSTM, GRU or SimpleRNN over ``value`` (a Keras (N, T, C) sequence); ``reported`` gets the note."""
    kind = type(layer).__name__
    cell = layer.cell
    rank = len(value.shape)
    if rank != 3 or value.layout.flattened_from is not None:
        raise ConversionError(f"{kind} needs a (batch, time, features) sequence")
    activation = activation_name(cell.activation)
    recurrent_activation = activation_name(getattr(cell, "recurrent_activation", None)) if kind != "SimpleRNN" \
        else None
    native = _native_reason(ctx, layer, kind, activation, recurrent_activation)
    start = len(ctx.net.layer)
    if native is None:
        result = _native(ctx, layer, kind, value, name)
        how = (f"Caffe's {'LSTM' if kind == 'LSTM' else 'RNN'} (native): "
               + ("gates reordered from Keras' (i, f, c, o) to Caffe's (i, f, o, g); " if kind == "LSTM" else
                  "its final hidden state is the output, its extra tanh output layer unread; ")
               + "sequence-continuation and zero initial states from a DummyData layer")
    else:
        result = _unrolled(ctx, layer, kind, value, name, activation, recurrent_activation)
        steps = value.layout.keras_shape(value.shape)[1]
        how = f"unrolled over its {steps} steps with Caffe 1.0 layers ({native})"
    types = ctx.caffe_types(start)
    ctx.note(reported, sorted(set(types)), f"{kind} '{layer.name}' {how}")
    return result


def _native_reason(ctx, layer, kind, activation, recurrent_activation) -> str | None:
    """None when Caffe's own recurrent layer computes ``layer`` exactly; else why it is unrolled."""
    if kind == "GRU":
        return "Caffe has no GRU layer"
    caffe_type = "LSTM" if kind == "LSTM" else "RNN"
    if not ctx.target.allows(caffe_type, "DummyData"):
        return f"target '{ctx.target.name}' lacks Caffe's {caffe_type} or DummyData"
    if activation != "tanh" or (kind == "LSTM" and recurrent_activation != "sigmoid"):
        return f"Caffe's {caffe_type} computes tanh and sigmoid only, this layer {activation}" + (
            f" and {recurrent_activation}" if kind == "LSTM" else "")
    if kind == "SimpleRNN" and layer.return_sequences:
        return "Caffe's RNN outputs tanh(W_ho h + b_o) at each step, not h"
    return None


def _time_major(ctx, name, blob, n, t, c):
    """A batch-major (N, T, C) blob as time-major (T, N, C): a Reshape when N is 1, else one axis moved."""
    if n == 1:
        return reshape(ctx, ctx.unique(f"{name}/time_major"), blob, [t, 1, c])
    return move_axis(ctx, ctx.unique(f"{name}/time_major"), blob, (n, t, c), 1, 0)


def _native(ctx, layer, kind, value, name) -> RecurrentResult:
    cell = layer.cell
    units = cell.units
    n, t, c = value.layout.keras_shape(value.shape)
    blob = ctx.blob_in(value, identity(3), name)
    x = _time_major(ctx, name, blob, n, t, c)
    if layer.go_backwards:
        x = reverse_axis(ctx, f"{name}/backwards", x, 0, t)
    lstm = kind == "LSTM"
    kernel = weight_array(cell.kernel)
    recurrent_kernel = weight_array(cell.recurrent_kernel)
    bias = weight_array(cell.bias) if cell.use_bias else np.zeros(kernel.shape[1], np.float32)
    states = ["h0", "c0"] if lstm else ["h0"]
    feeds = ctx.add("DummyData", ctx.unique(f"{name}/constants"), [],
                    [ctx.unique(f"{name}/cont")] + [ctx.unique(f"{name}/{s}") for s in states])
    param = feeds.dummy_data_param
    for shape, fill in [((t, n), 1.0)] + [((1, n, units), 0.0)] * len(states):
        param.shape.add().dim.extend(shape)
        filler = param.data_filler.add()
        filler.type = "constant"
        filler.value = fill
    out = ctx.unique(f"{name}/sequence")
    finals = [ctx.unique(f"{name}/{s}_final") for s in (["h", "c"] if lstm else ["h"])]
    layer_param = ctx.add("LSTM" if lstm else "RNN", name, [x] + list(feeds.top), [out] + finals)
    layer_param.recurrent_param.num_output = units
    layer_param.recurrent_param.expose_hidden = True
    if lstm:
        order = np.concatenate([np.arange(0, 2 * units), np.arange(3 * units, 4 * units),
                                np.arange(2 * units, 3 * units)])  # Keras (i, f, c, o) -> Caffe (i, f, o, g)
        ctx.weights[name] = [np.ascontiguousarray(kernel[:, order].T), np.ascontiguousarray(bias[order]),
                             np.ascontiguousarray(recurrent_kernel[:, order].T)]
    else:
        ctx.weights[name] = [np.ascontiguousarray(kernel.T), np.ascontiguousarray(bias),
                             np.ascontiguousarray(recurrent_kernel.T), np.eye(units, dtype=np.float32),
                             np.zeros(units, np.float32)]
    ctx.shapes[out] = (t, n, units)
    final_states = [reshape(ctx, ctx.unique(f"{blob_name}/as_batch"), blob_name, [n, units]) for blob_name in finals]
    if not lstm:
        ctx.add("Silence", ctx.unique(f"{name}/unread_output"), [out], [])
    if layer.return_sequences:
        return RecurrentResult(CaffeValue(out, TIME_MAJOR, (t, n, units)), final_states, True)
    return RecurrentResult(CaffeValue(final_states[0], identity(2), (n, units)), final_states, False)


# ------------------------------------------------------------------ unrolled


class _Steps:
    """Writes the layers of one unrolled step; every name is under the layer's name and the step's index."""

    def __init__(self, ctx, name, activation, recurrent_activation):
        self.ctx = ctx
        self.name = name
        self.activation = activation
        self.recurrent_activation = recurrent_activation

    def part(self, step, what) -> str:
        return self.ctx.unique(f"{self.name}/t{step}/{what}")

    def apply(self, function, bottom, step, what) -> str:
        top = self.part(step, what)
        built = ActivationBuilder(self.ctx, top, bottom, top, final_name=top).build(function)
        return bottom if built is None else built

    def project(self, bottom, weight, step, what, bias=None) -> str:
        """InnerProduct of an (N, H) state with ``weight`` (Keras (H, G) kernel)."""
        top = self.part(step, what)
        layer = self.ctx.add("InnerProduct", top, [bottom])
        layer.inner_product_param.num_output = weight.shape[1]
        layer.inner_product_param.bias_term = bias is not None
        self.ctx.weights[top] = [np.ascontiguousarray(weight.T)] + ([np.ascontiguousarray(bias)] if bias is not None
                                                                   else [])
        return top

    def split(self, bottom, count, units, step, what) -> list[str]:
        tops = [self.part(step, f"{what}{i}") for i in range(count)]
        layer = self.ctx.add("Slice", self.part(step, f"{what}_split"), [bottom], tops)
        layer.slice_param.axis = 1
        layer.slice_param.slice_point.extend(units * i for i in range(1, count))
        return tops

    def add(self, a, b, step, what) -> str:
        return eltwise(self.ctx, self.part(step, what), [a, b], "sum")

    def mul(self, a, b, step, what) -> str:
        return eltwise(self.ctx, self.part(step, what), [a, b], "prod")

    def biased(self, bottom, bias, step, what) -> str:
        """bottom + a constant vector: Caffe's Scale with unit scale and a bias."""
        top = self.part(step, what)
        layer = self.ctx.add("Scale", top, [bottom])
        layer.scale_param.bias_term = True
        self.ctx.weights[top] = [np.ones_like(bias), np.ascontiguousarray(bias)]
        return top

    def scaled_by(self, bottom, scale, step, what) -> str:
        top = self.part(step, what)
        self.ctx.add("Scale", top, [bottom])
        self.ctx.weights[top] = [np.ascontiguousarray(scale)]
        return top


def _unrolled(ctx, layer, kind, value, name, activation, recurrent_activation) -> RecurrentResult:
    cell = layer.cell
    units = cell.units
    n, t, c = value.layout.keras_shape(value.shape)
    steps = _Steps(ctx, name, activation, recurrent_activation)
    kernel = weight_array(cell.kernel)
    recurrent_kernel = weight_array(cell.recurrent_kernel)
    bias = weight_array(cell.bias) if cell.use_bias else None
    input_bias, recurrent_bias = bias, None
    if kind == "GRU" and bias is not None and cell.reset_after:
        input_bias, recurrent_bias = bias[0], bias[1]
    # Every step's input projection at once: (N, T, C) x (C, G*H), over the last axis.
    blob = ctx.blob_in(value, identity(3), name)
    projected = ctx.unique(f"{name}/input_projection")
    layer_param = ctx.add("InnerProduct", projected, [blob])
    layer_param.inner_product_param.num_output = kernel.shape[1]
    layer_param.inner_product_param.axis = 2
    layer_param.inner_product_param.bias_term = input_bias is not None
    ctx.weights[projected] = [np.ascontiguousarray(kernel.T)] + (
        [np.ascontiguousarray(input_bias)] if input_bias is not None else [])
    if layer.go_backwards:
        projected = reverse_axis(ctx, f"{name}/backwards", projected, 1, t)
    inputs = [reshape(ctx, ctx.unique(f"{name}/t{i}/input"), piece, [n, kernel.shape[1]])
              for i, piece in enumerate(pieces(ctx, f"{name}/steps", projected, 1, t))]
    step_function = {"LSTM": _lstm_step, "GRU": _gru_step, "SimpleRNN": _simple_step}[kind]
    state = None
    outputs = []
    for i, x in enumerate(inputs):
        state = step_function(steps, cell, i, x, state, recurrent_kernel, recurrent_bias, units)
        outputs.append(state[0])
    states = list(state)
    if not layer.return_sequences:
        return RecurrentResult(CaffeValue(states[0], identity(2), (n, units)), states, False)
    framed = [reshape(ctx, ctx.unique(f"{name}/t{i}/framed"), h, [n, 1, units]) for i, h in enumerate(outputs)]
    sequence = concat(ctx, ctx.unique(f"{name}/sequence"), framed, 1, ctx.unique(f"{name}/sequence"))
    return RecurrentResult(CaffeValue(sequence, identity(3), (n, t, units)), states, True)


def _lstm_step(steps: _Steps, cell, i, x, state, recurrent_kernel, recurrent_bias, units):
    """Keras' LSTM step: i, f, c, o gates; c = f * c + i * act(g); h = o * act(c). At t = 0, h = c = 0."""
    gates = x if state is None else steps.add(x, steps.project(state[0], recurrent_kernel, i, "recurrent"), i, "gates")
    gate_i, gate_f, gate_g, gate_o = steps.split(gates, 4, units, i, "gate")
    gate_i = steps.apply(steps.recurrent_activation, gate_i, i, "input_gate")
    gate_o = steps.apply(steps.recurrent_activation, gate_o, i, "output_gate")
    candidate = steps.apply(steps.activation, gate_g, i, "candidate")
    c = steps.mul(gate_i, candidate, i, "new_memory")
    if state is not None:
        gate_f = steps.apply(steps.recurrent_activation, gate_f, i, "forget_gate")
        c = steps.add(steps.mul(gate_f, state[1], i, "kept_memory"), c, i, "c")
    else:
        steps.ctx.add("Silence", steps.part(i, "unused_forget_gate"), [gate_f], [])
    h = steps.mul(gate_o, steps.apply(steps.activation, c, i, "memory_out"), i, "h")
    return h, c


def _gru_step(steps: _Steps, cell, i, x, state, recurrent_kernel, recurrent_bias, units):
    """Keras' GRU step, both reset_after settings; h = z * h + (1 - z) * hh. At t = 0, h = 0."""
    x_z, x_r, x_h = steps.split(x, 3, units, i, "x")
    if state is None:
        if recurrent_bias is not None:  # reset_after: the recurrent term of h = 0 is its bias alone
            x_z = steps.biased(x_z, recurrent_bias[:units], i, "z_in")
            x_r = steps.biased(x_r, recurrent_bias[units:2 * units], i, "r_in")
            z = steps.apply(steps.recurrent_activation, x_z, i, "z")
            r = steps.apply(steps.recurrent_activation, x_r, i, "r")
            x_h = steps.add(x_h, steps.scaled_by(r, recurrent_bias[2 * units:], i, "reset_bias"), i, "h_in")
        else:
            z = steps.apply(steps.recurrent_activation, x_z, i, "z")
            steps.ctx.add("Silence", steps.part(i, "unused_reset_gate"), [x_r], [])
        hh = steps.apply(steps.activation, x_h, i, "candidate")
        keep = scaled(steps.ctx, steps.part(i, "one_minus_z"), z, scale=-1.0, shift=1.0)
        return (steps.mul(keep, hh, i, "h"),)
    h_prev = state[0]
    if cell.reset_after:
        inner = steps.project(h_prev, recurrent_kernel, i, "recurrent", recurrent_bias)
        r_z, r_r, r_h = steps.split(inner, 3, units, i, "recurrent")
        z = steps.apply(steps.recurrent_activation, steps.add(x_z, r_z, i, "z_in"), i, "z")
        r = steps.apply(steps.recurrent_activation, steps.add(x_r, r_r, i, "r_in"), i, "r")
        recurrent_h = steps.mul(r, r_h, i, "reset")
    else:
        inner = steps.project(h_prev, recurrent_kernel[:, :2 * units], i, "recurrent")
        r_z, r_r = steps.split(inner, 2, units, i, "recurrent")
        z = steps.apply(steps.recurrent_activation, steps.add(x_z, r_z, i, "z_in"), i, "z")
        r = steps.apply(steps.recurrent_activation, steps.add(x_r, r_r, i, "r_in"), i, "r")
        recurrent_h = steps.project(steps.mul(r, h_prev, i, "reset"), recurrent_kernel[:, 2 * units:], i,
                                    "recurrent_h")
    hh = steps.apply(steps.activation, steps.add(x_h, recurrent_h, i, "h_in"), i, "candidate")
    keep = scaled(steps.ctx, steps.part(i, "one_minus_z"), z, scale=-1.0, shift=1.0)
    h = steps.add(steps.mul(z, h_prev, i, "kept"), steps.mul(keep, hh, i, "new"), i, "h")
    return (h,)


def _simple_step(steps: _Steps, cell, i, x, state, recurrent_kernel, recurrent_bias, units):
    """Keras' SimpleRNN step: h = act(x W + b + h U)."""
    total = x if state is None else steps.add(x, steps.project(state[0], recurrent_kernel, i, "recurrent"), i, "sum")
    return (steps.apply(steps.activation, total, i, "h"),)


__all__ = ["RecurrentResult", "run_recurrent"]
