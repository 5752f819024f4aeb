"""Settings written once: a dataclass field that carries its own help, read by every place that lists it.

A settings record (:class:`~simulator.session.SessionConfig`, :class:`~simulator.metrics.EffortModel`,
:class:`~simulator.runner.RunSettings`) declares each field with :func:`setting`: its default and its
help text, and where the values form a fixed set, that set. From those fields come
``probseg-simulate``'s options (:mod:`simulator.cli`), the study file's keys
(:mod:`simulator.study_schema`) and the flat dict a run records (``config.json``): a field added to a
record appears in all of them, as HfArgumentParser, simple-parsing and tyro derive a command line from
a dataclass.

A record may nest others (``RunSettings.session``); :func:`settings_of` and :func:`flatten` see through
them, so the flat names stay unique across a record and the records it nests.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any

__all__ = ["Setting", "flatten", "setting", "settings_of", "unflatten"]


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    names: Iterable[str] | None = None,
    group: str | None = None,
    metavar: str | None = None,
) -> Any:
    """A dataclass field with its help text.

    Args:
        default: the field's default.
        help: one phrase for ``--help`` and the study docs; ``{choices}`` is replaced by the allowed
            values, listed.
        choices: the values the field allows (a study refuses any other; the record's own check
            says why).
        names: names the help lists without restricting the value (a registry such as
            :data:`~simulator.methods.METHODS`, read only when the help is shown).
        group: the option group, where it differs from the record's (``probseg-simulate --help``
            groups options as a study file does: arm, protocol, effort, execution).
        metavar: the value's name in ``--help`` (``--stop-at DICE``).
    """
    meta = {"help": help, "choices": choices, "names": names, "group": group, "metavar": metavar}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Setting:
    """One field of a settings record, as the command line and the study file see it.

    Attributes:
        name: the flat name (``max_iters``): the key in ``config.json`` and in a study file.
        type: the value's type without ``None`` (``int``, ``float``, ``bool`` or ``str``).
        optional: whether ``None`` is allowed (it then means "decided elsewhere", said in the help).
        default: the default value.
        choices: the allowed values, or None.
        group: ``arm``, ``protocol``, ``effort`` or ``execution``.
        metavar: the value's name in ``--help``, or None.
        raw_help: the help as declared; :attr:`help` fills in the values it lists.
        names: names the help lists without restricting the value (see :func:`setting`), or None.
    """

    name: str
    type: type
    optional: bool
    default: Any
    choices: tuple[Any, ...] | None
    group: str
    metavar: str | None
    raw_help: str
    names: Iterable[str] | None = None

    @property
    def help(self) -> str:
        """The help text, with ``{choices}`` replaced by the allowed values (or the listed names)."""
        listed = self.choices if self.choices is not None else self.names
        if listed is None:
            return self.raw_help
        return self.raw_help.replace("{choices}", ", ".join(map(str, listed)))


@functools.cache
def _nested(cls: type) -> dict[str, type]:
    """The fields of ``cls`` that hold a settings record, name -> the record's class."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls) if is_dataclass(hints[f.name])}


@functools.cache
def settings_of(cls: type, group: str = "arm") -> tuple[Setting, ...]:
    """Every field of the settings record ``cls`` and of the records it nests, in declaration order.

    ``group`` is the group of a field that names none; a nested record's fields take the group its
    field in ``cls`` names (``session`` -> ``protocol``).

    Raises:
        TypeError: a field without :func:`setting`'s help, or a flat name used twice (bugs, not input).
    """
    hints = typing.get_type_hints(cls)
    nested = _nested(cls)
    out: list[Setting] = []
    for f in fields(cls):
        meta = f.metadata
        if f.name in nested:
            out.extend(settings_of(nested[f.name], meta.get("group") or group))
            continue
        if "help" not in meta:
            raise TypeError(f"{cls.__name__}.{f.name}: declare it with simulator.setting.setting(default, help)")
        kind, optional = hints[f.name], False
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            kind, optional = args[0], True
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        out.append(Setting(f.name, kind, optional, default, meta["choices"], meta["group"] or group,
                           meta["metavar"], meta["help"], meta["names"]))
    seen: set[str] = set()
    for s in out:
        if s.name in seen:
            raise TypeError(f"{cls.__name__}: the flat name {s.name!r} is used twice")
        seen.add(s.name)
    return tuple(out)


def flatten(record: Any) -> dict[str, Any]:
    """``record`` as one flat dict, name -> value, nested records' fields inlined in their place."""
    out: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        out.update(flatten(value) if is_dataclass(value) else {f.name: value})
    return out


def unflatten(cls: type, flat: dict[str, Any]) -> Any:
    """The record of class ``cls`` that :func:`flatten` turns into ``flat``; a name ``flat`` lacks
    keeps its default (in a nested record too).

    Raises:
        ValueError: naming the first key that is no setting of ``cls``, and listing those that are.
    """
    names = [s.name for s in settings_of(cls)]
    unknown = sorted(set(flat) - set(names))
    if unknown:
        raise ValueError(f"{unknown[0]}: not a run setting; allowed: {', '.join(sorted(names))}")
    return _build(cls, flat)


def _build(cls: type, flat: dict[str, Any]) -> Any:
    nested = _nested(cls)
    kw = {f.name: (_build(nested[f.name], flat) if f.name in nested else flat[f.name])
          for f in fields(cls) if f.name in nested or f.name in flat}
    return cls(**kw)
