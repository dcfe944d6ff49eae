"""Errors that keraffe raises for problems in the user's input.

Every error a user can cause by their own input (a malformed file, an unsupported
layer, a shape that does not fit) is a :class:`KeraffeError`.  The CLI prints these
as one clear message and exits non-zero; anything else is a bug in keraffe and keeps
its traceback.
"""

from __future__ import annotations


class KeraffeError(Exception):
    """Base class for every error caused by the user's input."""


class CaffeFormatError(KeraffeError):
    """A prototxt, caffemodel or binaryproto could not be read."""


class UnsupportedLayerError(KeraffeError):
    """One or more layers have no converter; the message lists all of them."""


class ShapeError(KeraffeError):
    """A shape does not fit: weights against the net, or an input against a layer."""


class ConversionError(KeraffeError):
    """A model cannot be converted exactly; the message says what would be needed."""


class PruningError(KeraffeError):
    """A pruning argument, schedule or layer cannot be used as given."""


class GraphError(ConversionError):
    """A Keras model whose graph keraffe cannot read (a subclassed model, an unbuilt Sequential)."""


class LimitError(KeraffeError):
    """A file declares more than keraffe will allocate for it (see keraffe.limits); refused before allocating."""
