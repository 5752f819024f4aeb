"""A data spec's round trip through JSON (checkpoint records, ``.json`` files): tuples become lists and back.

The data specs (:class:`~probseg.data.partials.PairSpec`, :class:`~probseg.data.synth.SynthSpec`,
:class:`~probseg.data.augment.AugmentSpec`, :class:`~probseg.data.superpixels.SuperpixelSpec`) hold
their ranges as tuples, which JSON writes as lists. :class:`SpecRecord` converts every tuple field,
nested ones included, and back: which fields are tuples is read from the fields' defaults.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

__all__ = ["SpecRecord"]

S = TypeVar("S", bound="SpecRecord")


def _as_lists(value: Any) -> Any:
    return [_as_lists(v) for v in value] if isinstance(value, tuple) else value


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class SpecRecord:
    """Mixed into a dataclass spec: :meth:`to_dict` and :meth:`from_dict`."""

    def to_dict(self) -> dict[str, Any]:
        """JSON- and checkpoint-friendly: tuples (nested too) become lists."""
        return {k: _as_lists(v) for k, v in asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[S], d: dict[str, Any]) -> S:
        """The spec of ``d`` (as :meth:`to_dict` writes it, or any part of it: missing keys keep their
        defaults); an unknown key raises the dataclass's ``TypeError``."""
        ranges = {f.name for f in fields(cls) if isinstance(f.default, tuple)}  # type: ignore[arg-type]
        return cls(**{k: _as_tuples(v) if k in ranges else v for k, v in d.items()})
