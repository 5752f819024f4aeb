"""Named plug-ins: the methods, datasets and policies a run can name, found through entry points.

An installed package registers a name in one of three entry-point groups (the mechanism pytest and
other plug-in ecosystems use), in its ``pyproject.toml``::

    [project.entry-points."probseg.methods"]
    threshold = "mymethods:Threshold"      # a factory: called with the method's settings

probseg's own methods, datasets and policies are registered the same way (its ``pyproject.toml``), so a
shipped name and a plug-in's are found, loaded and called by one path. A method or policy may also be
named without installing anything, as ``module.path:factory`` (the module must be importable).

Loading imports nothing until a name is used, so listing the names is cheap.
"""

from __future__ import annotations

import importlib.metadata as md
import inspect
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["Registry", "check_settings", "factory_settings", "is_factory_spec"]

# ``module.path:attr`` (attr may be dotted): what an entry point's value looks like.
_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_factory_spec(name: str) -> bool:
    """True when ``name`` has the form ``module.path:factory``."""
    return isinstance(name, str) and bool(_SPEC.match(name))


class Registry(Mapping[str, Any]):
    """The names of one entry-point group, each loaded on first use.

    Args:
        kind: what the names are (``method``, ``dataset``, ``policy``): the argument errors name.
        group: the entry-point group (``probseg.methods``, ...).
        shipped: probseg's own entries, name -> ``module:attr``, exactly as ``pyproject.toml``
            declares them. They are used where the installed metadata lacks them: a checkout run
            from its folder without ``pip install`` (``PYTHONPATH=.``), or an editable install made
            before the entry points existed (its metadata is written at install time). A test keeps
            this table and ``pyproject.toml`` equal.
        specs: also accept ``module.path:factory`` for a name that is not registered.

    ``name in registry`` is True for a registered name and, with ``specs``, for any well-formed
    ``module:factory`` (whether it imports is found out by :meth:`load`, whose error says why).
    Iteration gives the shipped names in their order, then the plug-ins' sorted. A plug-in cannot
    replace a shipped name (the shipped entry wins), so a study's arms keep meaning what they meant.
    ``registry[name]`` is the loaded object.
    """

    def __init__(self, kind: str, group: str, shipped: dict[str, str], *, specs: bool = True) -> None:
        self.kind = kind
        self.group = group
        self.shipped = dict(shipped)
        self.specs = specs
        self._loaded: dict[tuple[str, str], Any] = {}
        self._entries: tuple[tuple[str, ...], dict[str, md.EntryPoint]] | None = None

    def entries(self) -> dict[str, md.EntryPoint]:
        """name -> entry point: the shipped ones, then every installed package's.

        Read again whenever ``sys.path`` changes, so a package put on it after import is seen.
        """
        key = tuple(sys.path)
        if self._entries is None or self._entries[0] != key:
            out = {name: md.EntryPoint(name=name, value=value, group=self.group) for name, value in self.shipped.items()}
            for ep in sorted(md.entry_points(group=self.group), key=lambda e: e.name):
                out.setdefault(ep.name, ep)
            self._entries = (key, out)
            self._loaded.clear()  # a module found on the old path may not be the one found now
        return self._entries[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self.entries())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return name in self.entries() or (self.specs and is_factory_spec(name))

    def __getitem__(self, name: str) -> Any:
        if name not in self:
            raise KeyError(name)  # the Mapping contract: .get() and `in` rely on it
        return self.load(name)

    def unknown(self, name: str) -> ValueError:
        """The one-line error for a name that is not known, listing the known ones."""
        hint = " or module.path:factory" if self.specs else ""
        return ValueError(f"{self.kind}: unknown {self.kind} {name!r}; allowed: {', '.join(self)}{hint}")

    def load(self, name: str) -> Any:
        """The object ``name`` stands for (a factory or class), imported on first use.

        Raises:
            ValueError: naming the kind (``method: ...``) for an unknown name, a module that does not
                import, or an attribute it lacks.
        """
        entries = self.entries()
        if name in entries:
            ep = entries[name]
        elif self.specs and is_factory_spec(name):
            ep = md.EntryPoint(name=name, value=name, group=self.group)
        else:
            raise self.unknown(name)
        key = (ep.name, ep.value)
        if key not in self._loaded:
            try:
                obj = ep.load()
            except ImportError as exc:
                raise ValueError(f"{self.kind}: cannot import {ep.value!r} for {name!r}: {exc}") from None
            except AttributeError:
                raise ValueError(f"{self.kind}: {ep.module!r} has no attribute {ep.attr!r} (from {name!r})") from None
            if not callable(obj):
                raise ValueError(f"{self.kind}: {ep.value!r} ({name!r}) is not callable; expected a factory or a class")
            self._loaded[key] = obj
        return self._loaded[key]


def factory_settings(factory: Any) -> dict[str, Any] | None:
    """The settings (keyword parameters) a factory takes, each with its default
    (``inspect.Parameter.empty`` where it has none), or None when it does not say (a ``**kwargs``
    factory, or one without a signature): such a factory checks its settings itself."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return {n: p.default for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_settings(kind: str, name: str, factory: Any, settings: dict[str, Any]) -> None:
    """Refuse a setting the factory does not take, naming it and the ones it takes, and a call
    that would lack a setting the factory needs. A factory that takes ``**kwargs`` checks its
    settings itself.
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some builtins have no signature: let the call say
        return
    needed = [n for n, p in params.items()
              if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in settings]
    if needed:
        raise ValueError(f"{kind}: {name!r} cannot be made: its factory needs the setting(s) {', '.join(needed)}")
    allowed = factory_settings(factory)
    if allowed is None:
        return
    for key in sorted(settings):
        if key not in allowed:
            raise ValueError(f"{key}: not a setting of {kind} {name!r}; its settings: {list(allowed) or 'none'}")
