"""Recipe YAML, loaded as data with limits.

``yaml.safe_load`` already refuses tags that build Python objects; on top of
it :func:`load_yaml_file` refuses what would hang or mislead:

* files that are not UTF-8 text (a binary file given as a recipe) or are
  larger than :data:`MAX_BYTES`;
* alias bombs: the document's size with every alias expanded is computed on
  the composed node graph (linear in its size) and refused above
  :data:`MAX_NODES`, before any Python object is built;
* a key given twice in one mapping (YAML keeps the last silently).

Every problem is a :class:`~fusionkit.errors.RecipeError` naming the file
(and line where YAML knows it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .errors import RecipeError

__all__ = ["load_yaml_file", "load_yaml_text", "MAX_NODES", "MAX_BYTES"]

#: most nodes a recipe may expand to (aliases counted every time they are used)
MAX_NODES = 200_000
#: largest recipe file read
MAX_BYTES = 8 << 20


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # the base class reports unhashable keys
            if key in seen:
                mark = key_node.start_mark
                raise RecipeError(f"key {key!r} appears twice in one mapping (YAML would keep only the last)",
                                  where=f"{mark.name}:{mark.line + 1}:{mark.column + 1}",
                                  hint="remove one of them")
            seen[key] = True
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes in the document with aliases expanded; stops counting past ``limit``."""
    memo: dict[int, int] = {}
    # iterative post-order walk over the (shared) node graph
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    active: set[int] = set()
    while stack:
        node, done = stack.pop()
        nid = id(node)
        if nid in memo:
            continue
        if isinstance(node, yaml.ScalarNode):
            memo[nid] = 1
            continue
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value))
        if not done:
            if nid in active:  # a recursive alias: infinite when expanded
                return limit + 1
            active.add(nid)
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in memo)
            continue
        active.discard(nid)
        memo[nid] = min(limit + 1, 1 + sum(memo.get(id(c), limit + 1) for c in children))
    return memo[id(root)]


def load_yaml_text(text: str, *, source: str = "<recipe>") -> Any:
    """Parse one YAML document as plain data, with the limits of this module."""
    loader = _Loader(text)
    loader.name = source
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, MAX_NODES)
        if size > MAX_NODES:
            raise RecipeError(f"YAML aliases expand to more than {MAX_NODES:,} values (an alias bomb?)",
                              where=source, hint="write the values out, or use fewer nested aliases (*name)")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"malformed YAML: {problem}", where=where,
                          hint="check indentation and that every 'key: value' has a space after the colon; "
                               "a recipe holds plain data (no !!python tags)") from None
    except RecursionError:
        raise RecipeError("YAML nesting is too deep", where=source, hint="flatten the document") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | os.PathLike[str]) -> Any:
    """Read and parse a recipe file; every failure is a RecipeError naming the file."""
    path = Path(path)
    hint = "give the path of a YAML recipe (see recipes/ for examples)"
    if not path.exists():
        raise RecipeError("recipe file not found", where=str(path), hint=hint)
    if path.is_dir():
        raise RecipeError("recipe path is a folder, not a file", where=str(path), hint=hint)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise RecipeError(f"recipe file is {size:,} bytes (more than {MAX_BYTES:,})", where=str(path), hint=hint)
        data = path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"cannot read recipe file: {exc.strerror or exc}", where=str(path),
                          hint="check the file's permissions") from None
    if b"\x00" in data:
        raise RecipeError("recipe file is binary, not YAML text", where=str(path), hint=hint)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"recipe file is not UTF-8 text (byte {exc.start})", where=str(path),
                          hint="save the recipe as UTF-8") from None
    return load_yaml_text(text, source=str(path))
