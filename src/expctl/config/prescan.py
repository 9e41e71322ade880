"""Before Hydra sees a snapshot: parse every config file safely, and scan it for resolvers that are not allowed.

Pure (no Hydra, no OmegaConf). ``parse_configs`` runs every YAML file through ``safe_yaml`` (syntax, duplicate
keys, bombs, size); ``resolver_errors`` finds interpolations that call a resolver ``expctl.yaml`` does not
allow-list, with the file and key of each. The scan is for good messages; the guarantee is the guard in
``compose.Composer`` (a blocked resolver raises if it is ever called, whatever route led to it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from expctl.config import safe_yaml
from expctl.core.errors import ConfigError, truncate

SAFE_RESOLVERS = frozenset({"oc.select", "oc.dict.keys", "oc.dict.values", "oc.decode", "oc.create"})
RESOLVER_CALL = re.compile(r"\$\{\s*([A-Za-z_][\w.\-]*)\s*:")


def parse_configs(files: Mapping[str, bytes]) -> tuple[dict[str, Any], list[ConfigError]]:
    """Every YAML file parsed by ``safe_yaml`` (before Hydra sees any): ``({path: document}, errors)``.

    Syntax errors, duplicate keys, alias bombs and oversized files are reported with file and line.
    """
    docs: dict[str, Any] = {}
    errors = []
    for path, data in sorted(files.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        try:
            doc = safe_yaml.load(data, path)
        except ConfigError as exc:
            errors.append(exc)
            continue
        if doc is not None and not isinstance(doc, (dict, list)):  # Hydra reads `hello` as an empty config
            errors.append(ConfigError(f"must be a mapping of keys to values (got {type(doc).__name__} "
                                      f"{truncate(repr(doc), 60)})", file=path))
            continue
        docs[path] = doc
    return docs, errors


def resolver_errors(docs: Mapping[str, Any], allow_resolvers: Sequence[str] = ()) -> list[ConfigError]:
    """Interpolations calling a resolver that is not allow-listed, anywhere in any config file.

    This static scan gives the message its file and key; the composition itself is guarded too (a blocked
    resolver raises if it is ever called, whatever route the interpolation took: see ``Composer``).
    """
    allowed = SAFE_RESOLVERS | set(allow_resolvers)
    errors = []
    for path, doc in sorted(docs.items()):
        if path == "expctl.yaml":
            continue
        for key, value in leaves(doc, ""):
            name = next((n for n in RESOLVER_CALL.findall(value) if n not in allowed), None) \
                if isinstance(value, str) else None
            if name is not None:
                errors.append(not_allowed(name, path, key or None))
    return errors


SEARCHPATH_REFUSED = ("configs are read only from the commit's conf/: a search path would compose files of the "
                      "machine expctl runs on (outside git, maybe secret) into the runs")


def searchpath_errors(docs: Mapping[str, Any]) -> list[ConfigError]:
    """``hydra.searchpath`` anywhere: Hydra would load configs from the filesystem (``file:///home/ci/...``) or
    from installed packages. The composition is checked too (a ``# @package hydra`` group can set it)."""
    return [ConfigError(SEARCHPATH_REFUSED, file=path, key="hydra.searchpath") for path, doc in sorted(docs.items())
            if isinstance(doc, dict) and isinstance(doc.get("hydra"), dict) and "searchpath" in doc["hydra"]]


OUTSIDE_CONF = "names a config outside conf/ ('..'): configs are read only from the commit's conf/"


def escapes_conf(name: str) -> bool:
    """Whether a config name or group option climbs out of conf/ (``../../home/ci/creds``): Hydra joins it to
    the config directory as a path, so it would load any YAML file of the machine expctl runs on."""
    return ".." in re.split(r"[/\\]", name)


def defaults_errors(docs: Mapping[str, Any]) -> list[ConfigError]:
    """Defaults-list entries (``- ../x``, ``- group: ../x``, ``- override /group: ../x``) that leave conf/."""
    errors = []
    for path, doc in sorted(docs.items()):
        entries = doc.get("defaults") if isinstance(doc, dict) else None
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            names = [entry] if isinstance(entry, str) else [
                part for key, value in entry.items() for part in (key, *(value if isinstance(value, list) else
                                                                         [value]))] if isinstance(entry, dict) else []
            if any(isinstance(n, str) and escapes_conf(n) for n in names):
                errors.append(ConfigError(OUTSIDE_CONF, file=path, key=f"defaults[{i}]"))
    return errors


def not_allowed(name: str, file: str, key: str | None) -> ConfigError:
    return ConfigError(f"resolver '{name}' is not allowed in committed configs "
                       "(allow-list it in expctl.yaml: allow_resolvers)", file=file, key=key)


def leaves(data: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from leaves(value, f"{path}[{i}]")
    else:
        yield path, data
