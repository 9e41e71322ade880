"""Compose experiments with Hydra's public Compose API, and turn sweep points into resolved configs fast.

This is the only module that imports Hydra and OmegaConf. An experiment file is a Hydra primary config whose
defaults list picks groups from ``conf/``. Hydra composes it once per combination of swept *group* options;
swept *values* are then set on that composition directly (and resolved with OmegaConf only when an
interpolation depends on them), which gives exactly what one ``compose(overrides=point)`` per point gives,
at a small fraction of the cost (``sweep_points``: the axes as data, and a point's values set on a composition).
"""

from __future__ import annotations

import difflib
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expctl.config.prescan import (
    OUTSIDE_CONF,
    RESOLVER_CALL,
    SAFE_RESOLVERS,
    SEARCHPATH_REFUSED,
    escapes_conf,
    leaves,
    not_allowed,
)
from expctl.config.source import materialize
from expctl.config.sweep_axes import Axis, depends_on_sweep, exists, set_path, simple_element_value
from expctl.core import sweep
from expctl.core.errors import ConfigError

PRIMARY_PREFIX = "__expctl_experiment__"
@dataclass
class Experiment:
    """A composed experiment: its sweep axes and a cache of compositions per group-option combination."""

    name: str
    file: str
    primary: str
    axes: tuple[Axis, ...]
    _combos: dict[tuple[str, ...], _Combo] = field(default_factory=dict)

    @property
    def size(self) -> int:
        total = 1
        for axis in self.axes:
            total *= len(axis.elements)
        return total


@dataclass
class _Combo:
    unresolved: dict[str, Any]
    resolved: dict[str, Any]
    slow: bool  # some interpolation depends on a swept value: resolve every point with OmegaConf


class BlockedResolver(Exception):
    """Raised by a resolver that is not allow-listed, if an interpolation reaches it during composition."""

    def __init__(self, name: str) -> None:
        super().__init__(f"resolver '{name}' is not allowed in committed configs "
                         "(allow-list it in expctl.yaml: allow_resolvers)")
        self.name = name


def _blocked(name: str) -> Any:
    def resolver(*_args: Any) -> Any:
        raise BlockedResolver(name)

    return resolver


class Composer:
    """Materializes a snapshot's conf/ and experiments into a temporary Hydra config dir and composes them."""

    def __init__(self, files: Mapping[str, bytes], allow_resolvers: Sequence[str] = ()) -> None:
        self.files = files
        self.allowed = SAFE_RESOLVERS | set(allow_resolvers)
        self._stack = ExitStack()
        self._parser: Any = None
        self.conf_dir = Path()
        self._warned: set[str] = set()

    def __enter__(self) -> Composer:
        from hydra import initialize_config_dir
        from hydra.core.override_parser.overrides_parser import OverridesParser

        tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="expctl-conf-")))
        self.conf_dir = tmp / "conf"
        self.conf_dir.mkdir()
        materialize({p[len("conf/"):]: d for p, d in self.files.items() if p.startswith("conf/")}, self.conf_dir)
        self._stack.enter_context(initialize_config_dir(config_dir=str(self.conf_dir), version_base="1.3"))
        self._stack.callback(self._guard_resolvers())
        # glob() asks the loader for a group's options; this is the one method it calls
        self._parser = OverridesParser.create(config_loader=_GroupOptions(self.conf_dir))  # type: ignore[arg-type]
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _guard_resolvers(self) -> Any:
        """The one choke point for secrets: while composing, every registered resolver that is not allow-listed
        (``oc.env``, Hydra's ``hydra``/``now``, anything a library registered) is replaced by one that raises.
        Whatever the route — experiment body, conf/ group, defaults list, sweep value, a value expctl sets —
        nothing from the environment or the filesystem can be resolved into a config. Returns the undo."""
        from omegaconf import OmegaConf
        from omegaconf.basecontainer import BaseContainer  # OmegaConf has no public listing of resolvers

        registry: dict[str, Any] = BaseContainer._resolvers
        saved = {name: fn for name, fn in registry.items() if name not in self.allowed}
        for name in saved:
            OmegaConf.register_new_resolver(name, _blocked(name), replace=True)

        def restore() -> None:
            BaseContainer._resolvers.update(saved)

        return restore

    # --- experiments -------------------------------------------------------------------------------------

    def load(self, name: str, file: str) -> Experiment:
        """Compose the experiment without overrides and parse its sweep into axes."""
        primary = PRIMARY_PREFIX + name.replace("/", "__")
        (self.conf_dir / f"{primary}.yaml").write_bytes(self.files[file])
        exp = Experiment(name, file, primary, self._axes(self._sweep_params(primary, file), file))
        self.combo(exp, tuple(a.values[0] for a in exp.axes if a.group))
        return exp

    def _sweep_params(self, primary: str, file: str) -> list[tuple[str, str]]:
        """``hydra.sweeper.params`` as Hydra's BasicSweeper reads it: ``(key, "key=value")`` per param.

        Taken from Hydra's own composition (so params from conf/ files count, values are typed ``str`` by
        BasicSweeperConf, a YAML list ``[1, 2]`` is one list value, interpolations are resolved — guarded)."""
        from omegaconf import DictConfig, OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        cfg = self._compose_cfg(primary, file, [], hydra=True)
        try:
            if OmegaConf.select(cfg, "hydra.searchpath"):  # wherever it was set: conf/, a group, the experiment
                raise ConfigError(SEARCHPATH_REFUSED, file=file, key="hydra.searchpath")
            chosen = OmegaConf.select(cfg, "hydra.runtime.choices") or {}
            outside = next((g for g, o in chosen.items() if escapes_conf(f"{g}/{o}")), None)  # any other route
            if outside is not None:
                raise ConfigError(OUTSIDE_CONF, file=file, key=f"defaults.{outside}")
            node = OmegaConf.select(cfg, "hydra.sweeper.params")
            if node is None:
                return []
            if not isinstance(node, DictConfig):
                raise ConfigError("must be a mapping of key: values", file=file, key="hydra.sweeper.params")
            params = []
            for raw_key in node:
                key = str(raw_key)
                where = f"hydra.sweeper.params.{key}"
                try:
                    params.append((key, f"{key}={node[raw_key]}"))  # exactly BasicSweeper._parse_config
                except OmegaConfBaseException as exc:
                    raise _wrap(exc, file, where) from exc
            return params
        except OmegaConfBaseException as exc:
            raise _wrap(exc, file, "hydra.sweeper.params") from exc

    def _axes(self, params: Sequence[tuple[str, str]], file: str) -> tuple[Axis, ...]:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        axes = []
        total = 1
        for key, text in params:
            where = f"hydra.sweeper.params.{key}"
            blocked = next((n for n in RESOLVER_CALL.findall(text) if n not in self.allowed), None)
            if blocked is not None:
                raise not_allowed(blocked, file, where)
            try:
                (override,) = self._parser.parse_overrides([text])
                add = "++" if override.is_force_add() else "+" if override.is_add() else ""
                if override.is_delete():
                    raise ConfigError("deleting keys (~) cannot be swept", file=file, key=where)
                path = override.key_or_group
                group = (self.conf_dir / path).is_dir()
                if override.is_sweep_override():
                    if not override.is_discrete_sweep():
                        raise ConfigError(
                            f"{override.value_type.name.lower().replace('_', ' ')} cannot be enumerated: "
                            "only comma lists, choice(), range() and glob() sweeps are supported",
                            file=file, key=where,
                        )
                    sweep_value = override.value()
                    if getattr(sweep_value, "shuffle", False):
                        raise ConfigError("shuffle() sweeps are not deterministic", file=file, key=where)
                    # the same point twice (seed: 1,1) is one run: Hydra would launch it twice; a range of a
                    # billion values is refused after the most any cap allows, never enumerated
                    elements = tuple(dict.fromkeys(f"{override.get_key_element()}={v}"
                                                   for v in sweep.bounded(override.sweep_string_iterator())))
                else:
                    elements = (f"{override.get_key_element()}={override.get_value_element_as_str()}",)
                if not elements:
                    raise ConfigError("sweep has no values", file=file, key=where)
                values = tuple(self._element_value(e, group) for e in elements)
            except sweep.SweepUnbounded as exc:
                raise ConfigError(str(exc), file=file, key=where) from exc
            except (HydraException, OmegaConfBaseException, ValueError) as exc:
                raise ConfigError(f"invalid sweep: {_first_line(exc)}", file=file, key=where) from exc
            if group and not self._has_group(path):
                raise ConfigError(f"unknown config group '{path}'", file=file, key=where)
            if group and any(escapes_conf(str(v)) for v in values):
                raise ConfigError(OUTSIDE_CONF, file=file, key=where)
            total *= len(elements)
            if total > sweep.MAX_RUNS:  # before the next axis is enumerated
                raise ConfigError(str(sweep.SweepUnbounded()), file=file, key="hydra.sweeper.params")
            axes.append(Axis(key, path, group, override.is_sweep_override(), elements, values, add))
        return tuple(axes)

    def _element_value(self, element: str, group: bool) -> Any:
        simple = simple_element_value(element, group)
        if simple is not None:  # a plain int or word: what Hydra's parser gives, without parsing
            return simple
        override = self._parser.parse_override(element)
        return override.get_value_string() if group else override.value()

    def _has_group(self, group: str) -> bool:
        return (self.conf_dir / group).is_dir()

    # --- compositions ------------------------------------------------------------------------------------

    def combo(self, exp: Experiment, choices: tuple[str, ...]) -> _Combo:
        """The composition for one combination of group options (cached)."""
        cached = exp._combos.get(choices)
        if cached is not None:
            return cached
        group_axes = [a for a in exp.axes if a.group]
        overrides = [f"{a.key}={c}" for a, c in zip(group_axes, choices, strict=True)]
        unresolved = self._compose(exp, overrides)
        self._check_resolvers(unresolved, exp.file)
        self._check_value_axes(exp, unresolved)
        resolved = self._resolve(unresolved, exp.file)
        combo = _Combo(unresolved, resolved, depends_on_sweep(unresolved, exp.axes))
        exp._combos[choices] = combo
        return combo

    def _compose(self, exp: Experiment, overrides: list[str]) -> dict[str, Any]:
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        cfg = self._compose_cfg(exp.primary, exp.file, overrides)
        try:
            data = OmegaConf.to_container(cfg, resolve=False)
        except OmegaConfBaseException as exc:
            raise _wrap(exc, exp.file) from exc
        assert isinstance(data, dict)
        return {str(k): v for k, v in data.items()}

    def _compose_cfg(self, primary: str, file: str, overrides: list[str], hydra: bool = False) -> Any:
        from hydra import compose
        from hydra.errors import HydraException, MissingConfigException
        from omegaconf.errors import OmegaConfBaseException

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                cfg = compose(config_name=primary, overrides=overrides, return_hydra_config=hydra)
        except MissingConfigException as exc:
            raise self._missing(exc, file) from exc
        except (HydraException, OmegaConfBaseException) as exc:
            raise _wrap(exc, file) from exc
        except (ValueError, TypeError) as exc:  # Hydra's own checks of a defaults list: `defaults: 5`, `[null]`
            raise ConfigError(_first_line(exc).replace(PRIMARY_PREFIX, ""), file=file) from exc
        except RecursionError as exc:
            raise ConfigError("cyclic interpolation or defaults", file=file) from exc
        for warning in caught:  # Hydra's (a defaults list without _self_): once, one line naming the file
            text = f"{file}: {_first_line(warning.message).replace(PRIMARY_PREFIX, '')}"
            if text not in self._warned:
                self._warned.add(text)
                warnings.warn(text, UserWarning, stacklevel=1)
        return cfg

    def _missing(self, exc: Exception, file: str) -> ConfigError:
        text = str(exc)
        match = re.search(r"Could not find '([^']+)'", text)
        if not match:
            return ConfigError(_first_line(exc).replace(PRIMARY_PREFIX, ""), file=file)
        missing = match.group(1)
        group, _, option = missing.rpartition("/")
        options = _GroupOptions(self.conf_dir).get_group_options(group) if group else []
        if group and not self._has_group(group):
            return ConfigError(f"unknown config group '{group}'", file=file, key=f"defaults.{group}")
        close = difflib.get_close_matches(option, options, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (options: {', '.join(options)})"
        return ConfigError(f"unknown option '{option}' in group '{group}'{hint}", file=file,
                           key=f"defaults.{group}")

    def _check_resolvers(self, data: Any, file: str, path: str = "") -> None:
        for key, value in leaves(data, path):
            if isinstance(value, str):
                for name in RESOLVER_CALL.findall(value):
                    if name not in self.allowed:
                        raise ConfigError(
                            f"resolver '{name}' is not allowed in committed configs "
                            "(allow-list it in expctl.yaml: allow_resolvers)", file=file, key=key)

    def _check_value_axes(self, exp: Experiment, data: dict[str, Any]) -> None:
        for axis in exp.axes:
            if axis.group or axis.add:
                continue
            if not exists(data, axis.path):
                paths = [k for k, _ in leaves(data, "")]
                close = difflib.get_close_matches(axis.path, paths, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"sweep over a key that does not exist{hint}", file=exp.file,
                                  key=f"hydra.sweeper.params.{axis.key}")

    def _resolve(self, data: dict[str, Any], file: str) -> dict[str, Any]:
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        try:
            resolved = OmegaConf.to_container(OmegaConf.create(data), resolve=True, throw_on_missing=True)
        except OmegaConfBaseException as exc:
            raise _wrap(exc, file) from exc
        except RecursionError as exc:
            raise ConfigError("cyclic interpolation", file=file) from exc
        assert isinstance(resolved, dict)
        return {str(k): v for k, v in resolved.items()}

    # --- points ------------------------------------------------------------------------------------------

    def point_config(self, exp: Experiment, indices: Sequence[int]) -> dict[str, Any]:
        """The resolved config of one sweep point (one index per axis), equal to Hydra's compose of it."""
        choices = tuple(a.values[i] for a, i in zip(exp.axes, indices, strict=True) if a.group)
        combo = self.combo(exp, choices)
        sets = [(a, a.values[i]) for a, i in zip(exp.axes, indices, strict=True) if not a.group]
        if not sets:
            return combo.resolved
        slow = combo.slow or any(isinstance(leaf, str) and "${" in leaf
                                 for _, v in sets for _, leaf in leaves(v, ""))
        base = combo.unresolved if slow else combo.resolved
        for axis, value in sets:
            if axis.add == "+" and exists(base, axis.path):
                raise ConfigError(f"cannot add '{axis.path}': it already exists (use ++ to override)",
                                  file=exp.file, key=f"hydra.sweeper.params.{axis.key}")
            base = set_path(base, axis.path.split("."), value)
        return self._resolve(base, exp.file) if slow else base


class _GroupOptions:
    """The one ConfigLoader method Hydra's override parser needs for glob(): a group's options."""

    def __init__(self, conf_dir: Path) -> None:
        self.conf_dir = conf_dir

    def get_group_options(self, group_name: str, results_filter: Any = None, **_: Any) -> list[str]:
        folder = self.conf_dir / group_name
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _first_line(exc: object) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _wrap(exc: BaseException, file: str, where: str | None = None) -> ConfigError:
    inner = exc.__cause__ or exc.__context__
    if type(exc).__name__ == "ConfigCompositionException" and inner is not None and \
            type(inner).__module__.startswith("omegaconf"):  # "In 'e': X raised while composing": say what
        return _wrap(inner, file, where)
    key = getattr(exc, "full_key", None) or where
    msg = _first_line(exc)
    name = type(exc).__name__
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, BlockedResolver):
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        msg = str(cause)
    elif name == "MissingMandatoryValue":
        msg = "missing mandatory value (???): set it in the experiment or a sweep"
    elif name == "InterpolationKeyError":
        msg = f"interpolation to a missing key: {msg}"
    elif name in ("InterpolationResolutionError", "InterpolationToMissingValueError") and "ecursi" in msg:
        msg = f"cyclic interpolation: {msg}"
    msg = msg.replace(PRIMARY_PREFIX, "")
    return ConfigError(msg, file=file, key=str(key) if key else None)
