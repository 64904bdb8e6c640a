"""The registry of balancing variants.

A variant is one file in ``vaes/variants`` that decorates its class with
``@register_variant("name", options=SomeOptions)``. Everything else (trainer, suites,
sweeps, tests) looks variants up here by name and never branches on a name.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Callable

_VARIANTS: dict[str, type] = {}
_OPTIONS: dict[str, type] = {}


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """Options of a variant that has none."""


def register_variant(name: str, *, options: type = NoOptions) -> Callable[[type], type]:
    """Class decorator: register a balancing variant under ``name`` with its options dataclass.

    Registering a name twice is an error (as in torchvision), never a silent overwrite.
    """
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"options of variant {name!r} must be a dataclass, got {options!r}")

    def wrap(cls: type) -> type:
        if name in _VARIANTS:
            raise ValueError(
                f"variant {name!r} is already registered by {_VARIANTS[name].__module__}; "
                "pick another name")
        _VARIANTS[name] = cls
        _OPTIONS[name] = options
        cls.name = name
        cls.Options = options
        return cls

    return wrap


def list_variants(pattern: str = "*") -> list[str]:
    """Sorted names of the registered variants, optionally filtered by a glob pattern."""
    return sorted(n for n in _VARIANTS if fnmatch.fnmatch(n, pattern))


def get_variant(name: str) -> type:
    """The class registered under ``name``; an unknown name lists the valid ones."""
    try:
        return _VARIANTS[name]
    except KeyError:
        raise KeyError(
            f"unknown variant {name!r}; registered variants: {', '.join(list_variants())}"
        ) from None


def variant_options(name: str) -> type:
    """The options dataclass of variant ``name``."""
    get_variant(name)
    return _OPTIONS[name]
