"""The ``PruneLowMagnitude`` wrapper: holds the masks and applies them in the forward pass.

How the mask reaches the wrapped layer: while the layer runs, the wrapper opens a
``keras.StatelessScope`` in which each pruned variable reads as
``variable * mask``.  That is Keras' own backend-agnostic mechanism for calling a
layer with substituted variable values (``Layer.stateless_call`` is built on it),
so the wrapped layer runs its own, unchanged ``call`` on TensorFlow, JAX and
PyTorch.  Because the product is inside the forward pass, the gradient of every
pruned weight is zero and nothing the optimizer does can bring a pruned weight
back into the network (tfmot instead assigns ``weight * mask`` to the variable,
which the next optimizer step can undo until the next assignment).

Masks change only on pruning steps, and who changes them depends on the fit:

* With :class:`~keraffe.pruning.UpdatePruningStep` among the callbacks (tfmot's
  recipe), the callback counts the steps and, on a pruning step, recomputes the
  masks between two batches.  The compiled train step then holds nothing but the
  multiply, so it compiles about as fast as the dense model's and runs as fast:
  compiling the mask update into the step cost JAX more time than the rest of a
  10-epoch fit's pruning overhead.
* Without it, the step counter and the mask update live in the training forward
  pass (``training=True``), part of the compiled train step on every backend:
  ``ops.cond`` picks between recomputing the masks and keeping them, and both
  results are written with ``Variable.assign`` (in-place updates on TensorFlow and
  PyTorch, returned state on JAX), so pruning proceeds with no callback at all.
"""

from __future__ import annotations

import keras
from keras import ops

from keraffe.errors import PruningError
from keraffe.pruning import prunable as prunable_lib
from keraffe.pruning.masks import NUMPY, SparsityPattern, update_mask
from keraffe.pruning.schedules import ConstantSparsity, PruningSchedule

__all__ = ["PruneLowMagnitude"]


def _resolve_schedule(pruning_schedule) -> PruningSchedule:
    if isinstance(pruning_schedule, dict):
        pruning_schedule = keras.saving.deserialize_keras_object(pruning_schedule)
    if not isinstance(pruning_schedule, PruningSchedule):
        raise PruningError(
            "`pruning_schedule` must be a keraffe.pruning.PruningSchedule (e.g. "
            f"ConstantSparsity or PolynomialDecay), received {pruning_schedule!r}."
        )
    return pruning_schedule


def _steps_eagerly() -> bool:
    """True where the train step runs as plain Python: PyTorch without ``torch.compile``.

    There, Python branches and Python-int step arithmetic are the cheapest way to
    skip work on the (many) steps that do not prune.
    """
    if keras.backend.backend() != "torch":
        return False
    import torch

    return not torch.compiler.is_compiling()


def _run_branch(pred, true_fn, false_fn):
    """Run only the branch ``pred`` picks, the way each backend's train step can.

    TensorFlow and JAX trace the step, so ``ops.cond`` builds a conditional that
    runs one branch.  Under ``torch.compile`` (``jit_compile=True`` on PyTorch), a
    Python branch would break the graph once per wrapper, and inductor fails on
    the conv graphs it then makes dynamic, so ``torch.cond`` keeps the branch
    inside the compiled graph.
    """
    if keras.backend.backend() != "torch":
        return ops.cond(pred, true_fn, false_fn)
    import torch

    return torch.cond(pred, true_fn, false_fn)


def _unchanged(masks):
    """The untaken-branch result: the masks themselves, copied only for ``torch.cond``.

    torch.cond rejects branch outputs that alias its inputs; XLA's conditional
    does not, and skipping the copy there saves a pass over every mask per step.
    """
    if keras.backend.backend() == "torch":
        return [ops.copy(mask) for mask in masks]
    return list(masks)


@keras.saving.register_keras_serializable(package="keraffe")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Prunes the weights of the wrapped layer by magnitude, following a schedule.

    Same constructor as tfmot's ``PruneLowMagnitude``; usually created by
    :func:`keraffe.pruning.prune_low_magnitude`.  State, all saved with the model:
    one non-trainable mask per pruned weight and ``pruning_step``, the number of
    training batches seen minus one (-1 before training, as in tfmot).
    """

    def __init__(
        self,
        layer,
        pruning_schedule=None,
        block_size=(1, 1),
        block_pooling_type="AVG",
        sparsity_m_by_n=None,
        **kwargs,
    ):
        if not isinstance(layer, keras.layers.Layer):
            raise PruningError(
                f"`layer` must be a keras.layers.Layer to prune, received {type(layer).__name__}: "
                f"{layer!r}."
            )
        reason = prunable_lib.why_not_prunable(layer)
        if reason is not None:
            raise PruningError(f"Layer '{layer.name}' ({type(layer).__name__}) cannot be pruned: {reason}.")
        if pruning_schedule is None:
            pruning_schedule = ConstantSparsity(0.5, begin_step=0)
        self.pruning_schedule = _resolve_schedule(pruning_schedule)
        self.pattern = SparsityPattern(
            block_size=tuple(block_size) if isinstance(block_size, list) else block_size,
            block_pooling_type=block_pooling_type,
            m_by_n=tuple(sparsity_m_by_n) if isinstance(sparsity_m_by_n, list) else sparsity_m_by_n,
        )
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        super().__init__(layer, **kwargs)
        self.supports_masking = layer.supports_masking
        self._targets = []
        self._masks = []
        #: True while UpdatePruningStep drives the masks from outside the train step (see the module docstring).
        self.driven_by_callback = False

    # tfmot's attribute names, for code that reads them.
    @property
    def block_size(self):
        return self.pattern.block_size

    @property
    def block_pooling_type(self):
        return self.pattern.block_pooling_type

    @property
    def sparsity_m_by_n(self):
        return self.pattern.m_by_n

    @property
    def masks(self) -> list:
        """The mask variables, one per pruned weight, in :attr:`pruned_weights` order."""
        return list(self._masks)

    @property
    def pruned_weights(self) -> list:
        """The wrapped layer's variables that the masks apply to."""
        return [target.variable for target in self._targets]

    def build(self, input_shape=None):
        super().build(input_shape)
        self._targets = prunable_lib.prunable_weights(self.layer)
        masks = []
        for target in self._targets:
            variable = target.variable
            self.pattern.check_fits(
                variable.shape, target.input_axis, f"'{self.layer.name}/{variable.name}'"
            )
            masks.append(
                self.add_weight(
                    name=f"{variable.name}_mask",
                    shape=variable.shape,
                    dtype=variable.dtype,
                    initializer="ones",
                    trainable=False,
                    aggregation="only_first_replica",
                )
            )
        self._masks = masks
        self.pruning_step = self.add_weight(
            name="pruning_step",
            shape=(),
            dtype="int32",
            initializer=keras.initializers.Constant(-1),
            trainable=False,
            aggregation="only_first_replica",
        )
        self.built = True

    def _recompute_masks(self, weights, current_masks, sparsity, xp=ops):
        return [
            update_mask(weight, mask, sparsity, target.input_axis, target.output_axis, self.pattern, xp)
            for target, weight, mask in zip(self._targets, weights, current_masks)
        ]

    def _advance_step(self, current_masks):
        """Count one training batch and re-prune if the schedule says so; returns the masks."""
        if _steps_eagerly():
            step = int(ops.convert_to_numpy(self.pruning_step.value)) + 1
        else:
            step = self.pruning_step.value + 1
        self.pruning_step.assign(step)
        if not self._targets:
            return current_masks
        should_prune, sparsity = self.pruning_schedule(step)
        if isinstance(step, int) and not bool(ops.convert_to_numpy(should_prune)):
            return current_masks
        # Masks are not trained: cut the weights from autograd before a branch
        # captures them (torch.cond would otherwise save them for a backward pass).
        weights = [ops.stop_gradient(target.variable.value) for target in self._targets]
        if isinstance(step, int):
            new_masks = self._recompute_masks(weights, current_masks, sparsity)
        else:
            new_masks = _run_branch(
                should_prune,
                lambda: self._recompute_masks(weights, current_masks, sparsity),
                lambda: _unchanged(current_masks),
            )
        for variable, value in zip(self._masks, new_masks):
            variable.assign(value)
        return list(new_masks)

    def prune_at(self, step: int) -> bool:
        """Recompute the masks between batches if ``step`` is a pruning step; returns whether it was.

        Called by UpdatePruningStep with the step it counts; the computation the
        train step runs when no callback drives the masks, done in NumPy (see
        :mod:`keraffe.pruning.masks`).
        """
        should_prune, sparsity = self.pruning_schedule(step)
        if not bool(ops.convert_to_numpy(should_prune)) or not self._targets:
            return False
        weights = [ops.convert_to_numpy(target.variable.value) for target in self._targets]
        current = [ops.convert_to_numpy(mask.value) for mask in self._masks]
        sparsity = float(ops.convert_to_numpy(sparsity))
        for variable, value in zip(self._masks, self._recompute_masks(weights, current, sparsity, NUMPY)):
            variable.assign(value)
        self.pruning_step.assign(step)
        return True

    def call(self, inputs, training=None, **kwargs):
        current_masks = [mask.value for mask in self._masks]
        if training is True and not self.driven_by_callback:
            current_masks = self._advance_step(current_masks)
        substitutes = {
            id(target.variable): target.variable.value * ops.cast(mask, target.variable.value.dtype)
            for target, mask in zip(self._targets, current_masks)
        }
        return self._call_with_substitutes(inputs, substitutes, kwargs)

    def _call_with_substitutes(self, inputs, substitutes, kwargs):
        """Run the wrapped layer with pruned variables reading as their masked values.

        The scope maps every variable of the wrapped layer, not only the pruned
        ones, because a nested ``StatelessScope`` does not fall back to an outer
        one: under JAX's traced train step the others must keep their traced values.
        Losses and variable updates made inside are handed on to the enclosing
        context, which is where Keras would have put them without the wrapper.
        """
        variables = self.layer.variables
        mapping = [(v, substitutes.get(id(v), v.value)) for v in variables]
        with keras.StatelessScope(
            state_mapping=mapping, collect_losses=True, initialize_variables=False
        ) as scope:
            entry_values = {id(v): scope.get_current_value(v) for v in variables}
            outputs = self.layer(inputs, **kwargs)
        for variable in variables:
            if id(variable) in substitutes:
                continue
            value = scope.get_current_value(variable)
            if value is not entry_values[id(variable)]:
                variable.assign(value)
        if scope.losses:
            self.layer.add_loss(list(scope.losses))
        return outputs

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, training=None, **kwargs):
        return self.layer.compute_output_spec(inputs, **kwargs)

    def compute_mask(self, inputs, previous_mask=None):
        return self.layer.compute_mask(inputs, previous_mask)

    def masked_weight_values(self) -> list:
        """The wrapped layer's weights as NumPy arrays, pruned ones multiplied by their masks.

        This is what the network computes with; :func:`strip_pruning` bakes it in.
        """
        masked = {
            id(target.variable): ops.convert_to_numpy(target.variable) * ops.convert_to_numpy(mask)
            for target, mask in zip(self._targets, self._masks)
        }
        return [
            masked.get(id(v), ops.convert_to_numpy(v)) for v in self.layer.weights
        ]

    def current_step(self) -> int:
        return int(ops.convert_to_numpy(self.pruning_step))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pruning_schedule": keras.saving.serialize_keras_object(self.pruning_schedule),
                "block_size": list(self.pattern.block_size),
                "block_pooling_type": self.pattern.block_pooling_type,
                "sparsity_m_by_n": None if self.pattern.m_by_n is None else list(self.pattern.m_by_n),
            }
        )
        return config
