"""A name -> handler table; registering a name twice is a bug and fails at import."""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterable, TypeVar

Handler = TypeVar("Handler", bound=Callable)


class Registry(Generic[Handler]):
    """Handlers of one direction, registered by the family modules of ``package``.

    The family modules import keras (and each other's helpers), so they are
    imported on first use, by ``load``, not when the package is.
    """

    def __init__(self, what: str, package: str, families: Iterable[str]):
        self.what = what
        self.package = package
        self.family_modules = tuple(families)
        self._handlers: dict[str, Handler] = {}
        self._families: dict[str, str] = {}
        self._loaded = False

    def load(self) -> "Registry[Handler]":
        """Import every family module once, so that every handler is registered."""
        if not self._loaded:
            self._loaded = True
            for family in self.family_modules:
                importlib.import_module(f"{self.package}.{family}")
        return self

    def register(self, *names: str) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            for name in names:
                if name in self._handlers:
                    raise RuntimeError(f"{self.what} for {name!r} registered twice")
                self._handlers[name] = handler
                self._families[name] = handler.__module__.rsplit(".", 1)[-1]
            return handler

        return decorate

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._handlers

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def family(self, name: str) -> str:
        return self._families[name]

    def missing(self, names: Iterable[str]) -> list[str]:
        return sorted({n for n in names if n not in self._handlers})
