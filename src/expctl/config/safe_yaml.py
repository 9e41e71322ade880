"""Every YAML document expctl reads goes through here: PyYAML's safe loader, bounded and strict.

* a file over ``MAX_BYTES`` is refused before it is parsed;
* a mapping with the same key twice is an error naming both lines (PyYAML silently keeps the last one);
* nesting is bounded (``MAX_DEPTH`` levels), counted while composing: a document of 5,000 ``[`` is refused
  at level 101, not by whatever stack depth Python's recursion limit meets first;
* aliases are bounded (``MAX_ALIASES``) and so is the size of the document *with aliases expanded*
  (``MAX_NODES``): an alias bomb ("billion laughs") is refused in milliseconds instead of being expanded by
  Hydra/OmegaConf for minutes.

Errors are ``ConfigError``s with the file and the line, e.g.
``experiments/e.yaml: line 4: duplicate key 'lr' (first defined on line 2)``.
"""

from __future__ import annotations

from typing import Any

import yaml

from expctl.core.errors import ConfigError

MAX_BYTES = 1 << 20  # 1 MiB: configs are a few KB; a bigger file is a mistake (or an attack)
MAX_ALIASES = 1000
MAX_NODES = 200_000  # nodes after expanding aliases
MAX_DEPTH = 100  # nested mappings and sequences: configs have a handful of levels


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and counts alias uses."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.ScalarEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            if any("\ud800" <= ch <= "\udfff" for ch in event.value):  # "\ud800": no UTF-8 (nor JSON) text has it
                raise _Refused(event.start_mark.line + 1, "a lone surrogate escape (\\ud800-\\udfff) is not a "
                                                          "character: it cannot be written as UTF-8")
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise _Refused(event.start_mark.line + 1, f"more than {MAX_ALIASES} YAML aliases")
        if not (self.check_event(yaml.SequenceStartEvent) or self.check_event(yaml.MappingStartEvent)):
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _Refused(event.start_mark.line + 1, f"YAML nesting is too deep (more than {MAX_DEPTH} levels)")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML reports it itself below
                continue
            if first is not None:
                raise _Refused(_line(key_node), f"duplicate key {key!r} (first defined on line {first})")
            seen[key] = _line(key_node)
        return super().construct_mapping(node, deep=deep)


def _binary(loader: _Loader, node: yaml.Node) -> Any:
    raise _Refused(_line(node), "binary data (!!binary) cannot be a config value: configs, run params and "
                                "manifests are text")


_Loader.add_constructor("tag:yaml.org,2002:binary", _binary)


class _Refused(Exception):
    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line, self.problem = line, problem


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document has once every alias is expanded (shared nodes counted per use)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in open_nodes:  # Hydra/OmegaConf would recurse forever on the cyclic object
            raise _Refused(_line(node), "recursive YAML alias (an anchor used inside itself)")
        open_nodes.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(v) for v in node.value)
        total = min(total, MAX_NODES + 1)
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    return size(root)


def load(data: bytes | str, file: str) -> Any:
    """Parse one YAML document safely, or raise a one-line ``ConfigError`` naming ``file`` and the line."""
    if len(data) > MAX_BYTES:
        raise ConfigError(f"file is {len(data) / (1 << 20):.1f} MiB, over the limit of "
                          f"{MAX_BYTES >> 20} MiB for a YAML config", file=file)
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not UTF-8 text (byte {exc.start})", file=file) from None
    try:
        loader = _Loader(data)
        try:
            root = loader.get_single_node()
            if root is None:
                return None
            if _expanded_size(root) > MAX_NODES:
                raise _Refused(_line(root), f"document expands to more than {MAX_NODES:,} nodes "
                                            "(a YAML alias bomb?)")
            return loader.construct_document(root)
        finally:
            loader.dispose()
    except _Refused as exc:
        raise ConfigError(f"line {exc.line}: {exc.problem}", file=file) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}YAML syntax error: {problem}", file=file) from None
    except RecursionError:
        raise ConfigError("YAML nesting is too deep", file=file) from None
