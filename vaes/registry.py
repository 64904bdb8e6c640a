"""Named registries: one mechanism for variants, data sets, sweep studies and speed trainers.

A :class:`Registry` maps names to objects. Registering is a decorator (``@REG.register("name")``)
or a call (``REG.register("name", obj)``); a name registered twice raises, never overwrites;
an unknown name raises :class:`UnknownName`, one error whose message lists the valid names;
``REG.list("*gamma*")`` gives the names, sorted, filtered by a glob pattern; tests register
for the length of a ``with REG.temporary(...)`` block instead of editing private dicts.

The variants' registry lives here too. A variant is one file in ``vaes/variants`` that
decorates its class with ``@register_variant("name", options=SomeOptions)``. Everything else
(trainer, suites, sweeps, the balance, tests) looks variants up by name and never branches on
a name: what differs between variants is asked of the class (its ``loss``, ``gamma``, and
for the balance its ``kl_weights``, see :class:`KLWeights`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
from collections.abc import Callable, Iterator
from typing import Any, Generic, NamedTuple, TypeVar

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    """A name no registry entry has. Both a KeyError (a failed look-up) and a ValueError (bad
    user input), so callers that catch either keep working."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Name -> object, for objects of one ``kind`` ("variant", "dataset", ...), which the
    errors name. ``hint`` ends the unknown-name message (where to see the entries)."""

    def __init__(self, kind: str, hint: str = ""):
        self.kind, self.hint = kind, hint
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Any:
        """``register(name, obj)`` adds obj and returns it; ``register(name)`` is a decorator."""
        if obj is None:
            return lambda o: self.register(name, o)
        if name in self._entries:
            old = self._entries[name]  # a class or function knows its module; an instance, its class's
            owner = getattr(old, "__module__", None) if callable(old) else None
            raise ValueError(f"{self.kind} {name!r} is already registered"
                             f"{f' by {owner}' if owner else ''}; pick another name")
        self._entries[name] = obj
        return obj

    def get(self, name: str) -> T:
        """The object registered under ``name``; else :class:`UnknownName`, listing the names."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name (a list from a TOML file)
            raise UnknownName(f"{self.kind}={name!r} is unknown; choose one of: "
                              f"{', '.join(self.list())}{self.hint}") from None

    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching the glob ``pattern``, sorted (one order for every registry,
        whatever the import order)."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @contextlib.contextmanager
    def temporary(self, name: str | None = None, obj: T | None = None) -> Iterator[Registry[T]]:
        """For tests: registers ``name -> obj`` (when given) for the ``with`` block; whatever is
        registered or removed inside the block, by any means, is undone when it ends."""
        if (name is None) != (obj is None):
            raise TypeError(f"temporary() takes a name and an object together, or neither; got {name!r}, {obj!r}")
        saved = dict(self._entries)
        try:
            if name is not None:
                self.register(name, obj)
            yield self
        finally:
            self._entries.clear()
            self._entries.update(saved)


# ---- the balancing variants -------------------------------------------------------------------

VARIANTS: Registry[type] = Registry("variant")


class KLWeights(NamedTuple):
    """A variant's answer to "what KL weight is this really?" (vaes.balance), from its classmethod
    ``kl_weights(opts, *, shape, latent_dim, epochs, steps_per_epoch)``: the weight w on the KL
    against the Gaussian NLL of the decoder std gamma the history records (gamma = 1 where fixed),
    so the effective beta against 1/2 SSE is w gamma^2 at each epoch's end."""
    constant: float | None   # k where it does not change during training, else None
    per_epoch: list[float]   # w at the end of each epoch listed
    meaning: str             # what the number means, with the paper


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """Options of a variant that has none."""


def register_variant(name: str, *, options: type = NoOptions) -> Callable[[type], type]:
    """Class decorator: register a balancing variant under ``name`` with its options dataclass
    (kept as ``cls.Options``; the class gets ``cls.name``)."""
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"options of variant {name!r} must be a dataclass, got {options!r}")

    def wrap(cls: type) -> type:
        VARIANTS.register(name, cls)  # raises on a duplicate before the class is touched
        cls.name, cls.Options = name, options
        return cls

    return wrap


def get_variant(name: str) -> type:
    """The class registered under ``name``; an unknown name lists the valid ones."""
    return VARIANTS.get(name)


def list_variants(pattern: str = "*") -> list[str]:
    """Sorted names of the registered variants, optionally filtered by a glob pattern."""
    return VARIANTS.list(pattern)


def variant_options(name: str) -> type:
    """The options dataclass of variant ``name``."""
    return get_variant(name).Options
