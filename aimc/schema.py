"""JSON Schema of each unit's config, made from the config dataclasses, and the config-file
loader that checks a file against it before anything is written.

Nothing here restates a validation rule. The schema takes from `hdl.config`:
- the fields, their types and defaults (`dataclasses.fields`), so a field added to a config class
  appears in its schema without an edit here;
- the integer ranges, recorded by watching the config's own `_check_int` calls while the default
  config and every preset are validated again (`_int_ranges`).
Rules the schema cannot express (cross-field ones such as "`lanes` divides `columns`", string
choices, the name pattern) stay where they are: `load()` constructs the config, and its
`__post_init__` message, which names the field, is reported with the file name.

A config file is JSON or TOML (by suffix) with a `unit` field and any of the unit's fields:

    unit = "nmpu"
    name = "mine"
    lanes = 32
"""

import ast
import dataclasses
import functools
import sys
import json
import tomllib
import typing
from pathlib import Path

import jsonschema

from hdl import config as hdl_config
from hdl import export
from hdl.export import UNITS

__all__ = ["SCHEMA_DIALECT", "ConfigError", "unit_schema", "schemas", "write_schemas",
           "config_fields", "parse_file", "validate", "load", "check_unit"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_JSON_TYPES = {bool: "boolean", int: "integer", str: "string", float: "number"}


class ConfigError(ValueError):
    """A config file or value the generator cannot take; the message names the file, the field
    and the allowed values."""


def config_fields(unit):
    """The dataclass fields of a unit's config, in declaration order."""
    return dataclasses.fields(UNITS[unit][0])


def _int_ranges(cls, presets):
    """{field: (lo, hi)} of every `_check_int` call the config makes while validating its
    default and its presets; a bound written in terms of other fields (`self.rows`) is None, as
    no fixed number is right for every config. A range checked only for some settings is seen
    when a preset uses them; rules this cannot see are still enforced by constructing the
    config."""
    seen = {}
    check = hdl_config._check_int

    def watch(name, value, lo, hi):
        fixed = _fixed_bounds(sys._getframe(1), name)
        bounds = tuple(b if ok else None for b, ok in zip((lo, hi), fixed))
        old = seen.setdefault(name, bounds)
        if old != bounds:           # a fixed bound that still moves: publish none
            seen[name] = tuple(a if a == b else None for a, b in zip(old, bounds))
        return check(name, value, lo, hi)

    hdl_config._check_int = watch
    try:
        for cfg in [cls(), *presets.values()]:
            cls(**cfg.to_dict())
    finally:
        hdl_config._check_int = check
    return seen


@functools.cache
def _check_calls(filename):
    """The `_check_int(...)` calls of a source file: [(first line, last line, field, lo, hi)]
    with lo/hi True when the bound does not mention `self`."""
    calls = []
    for node in ast.walk(ast.parse(Path(filename).read_text(), filename)):
        func = getattr(node, "func", None)
        if (isinstance(node, ast.Call)
                and (getattr(func, "id", None) or getattr(func, "attr", None)) == "_check_int"
                and len(node.args) == 4 and isinstance(node.args[0], ast.Constant)):
            fixed = [not any(isinstance(n, ast.Name) and n.id == "self" for n in ast.walk(arg))
                     for arg in node.args[2:]]
            calls.append((node.lineno, node.end_lineno, node.args[0].value, *fixed))
    return calls


def _fixed_bounds(frame, name):
    """(lo fixed, hi fixed) of the `_check_int` call for `name` that `frame` is making."""
    for first, last, field, lo, hi in _check_calls(frame.f_code.co_filename):
        if field == name and first <= frame.f_lineno <= last:
            return lo, hi
    return False, False         # not found in the source: publish no bound


@functools.cache
def unit_schema(unit):
    """The JSON Schema (draft 2020-12) of a config file for `unit`."""
    if unit not in UNITS:
        raise ConfigError(f"unknown unit {unit!r}; units: {', '.join(sorted(UNITS))}")
    cls, presets, _ = UNITS[unit]
    hints = typing.get_type_hints(cls)
    ranges = _int_ranges(cls, presets)
    props = {"unit": {"const": unit, "description": "the unit this file configures"}}
    for f in dataclasses.fields(cls):
        prop = {}
        kind = _JSON_TYPES.get(hints.get(f.name))
        if kind:
            prop["type"] = kind
        if f.default is not dataclasses.MISSING:
            prop["default"] = f.default
        lo, hi = ranges.get(f.name, (None, None)) if kind == "integer" else (None, None)
        if lo is not None:
            prop["minimum"] = lo
        if hi is not None:
            prop["maximum"] = hi
        if f.name in ranges and None in (lo, hi):
            prop["description"] = "a bound depends on other fields: checked by the config"
        prop["examples"] = sorted({getattr(p, f.name) for p in presets.values()}, key=repr)
        props[f.name] = prop
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"aimc-{unit}.schema.json",
        "title": f"{cls._UNIT} config file",
        "description": (f"Fields of hdl.config.{cls.__name__} (defaults as shown) and `unit`. "
                        f"Rules between fields, string choices and the name pattern are checked "
                        f"by constructing the config (see its docstring); presets: "
                        f"{', '.join(presets)}."),
        "type": "object",
        "properties": props,
        "required": ["unit"],
        "additionalProperties": False,
    }


def schemas():
    return {unit: unit_schema(unit) for unit in sorted(UNITS)}


def write_schemas(out_dir):
    """Write `<unit>.schema.json` for every unit into out_dir (atomically); returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for unit, schema in schemas().items():
        path = out_dir / f"{unit}.schema.json"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(schema, indent=1) + "\n")
        tmp.replace(path)
        paths.append(path)
    return paths


def check_unit(unit, where="--unit"):
    """A unit that has a config-file schema (the periphery tops have none yet)."""
    if unit not in UNITS:
        raise ConfigError(f"{where}: no config schema for unit {unit!r}; units: "
                          f"{', '.join(sorted(UNITS))}")
    return unit


def parse_file(path):
    """The table of a JSON or TOML config file; malformed files raise ConfigError with the
    parser's line and column."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            doc = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    elif suffix == ".json":
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: malformed JSON: {exc}") from None
    else:
        raise ConfigError(f"{path}: a config file must end in .json or .toml, not "
                          f"{suffix or 'no suffix'}")
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a config file holds one object/table of fields, not a "
                          f"{type(doc).__name__}")
    return doc


def _describe(value):
    return f"{_JSON_NAMES.get(type(value), type(value).__name__)} {json.dumps(value)}"


_JSON_NAMES = {bool: "boolean", int: "integer", str: "string", float: "number", list: "array",
               dict: "object", type(None): "null"}


def _message(err, schema):
    """One schema violation as 'field `x`: what is allowed, not what was given'."""
    props = schema["properties"]
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(props))
        return (f"unknown {schema['title'].split()[0]} field(s) {', '.join(map(repr, extra))}; "
                f"fields: {', '.join(p for p in props)}")
    if err.validator == "required":
        return f"no `unit` field: say which unit the file configures ({', '.join(sorted(UNITS))})"
    field = err.path[0] if err.path else "?"
    prop = props.get(field, {})
    if err.validator == "const":
        return (f"field `unit` is {err.instance!r}: this is a file for another unit, not "
                f"{prop['const']!r}")
    if err.validator == "type":
        return f"field `{field}` must be {_article(prop['type'])}, not {_describe(err.instance)}"
    if err.validator in ("minimum", "maximum"):
        lo, hi = prop.get("minimum", "…"), prop.get("maximum", "…")
        return f"field `{field}` must be in [{lo}, {hi}], not {err.instance}"
    return f"field `{field}`: {err.message}"


def _article(kind):
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def validate(unit, doc, where):
    """Raise ConfigError listing every schema violation of `doc` (fields plus `unit`)."""
    schema = unit_schema(unit)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: (list(e.path), e.validator))
    if errors:
        lines = [_message(e, schema) for e in errors]
        raise ConfigError(f"{where}: " + ("; ".join(lines)))


def load(path, unit=None):
    """(unit, config) from a JSON/TOML config file, checked against the unit's schema, then
    constructed (which checks the rules between fields). `unit`, when given, must match the
    file's `unit` field. Raises ConfigError naming the file, the field and the allowed range."""
    path = Path(path)
    doc = parse_file(path)
    if "unit" not in doc:
        hint = f" (add unit = {unit!r})" if unit else ""
        raise ConfigError(f"{path}: no `unit` field: say which unit the file configures "
                          f"({', '.join(sorted(UNITS))}){hint}")
    file_unit = doc["unit"]
    tops = getattr(export, "TOPS", {})
    if isinstance(file_unit, str) and file_unit in tops:
        raise ConfigError(f"{path}: {file_unit!r} is built from its presets ("
                          f"{', '.join(tops[file_unit][1])}); config files are for the units "
                          f"{', '.join(sorted(UNITS))}")
    if not isinstance(file_unit, str) or file_unit not in UNITS:
        raise ConfigError(f"{path}: field `unit` must be one of {', '.join(sorted(UNITS))}, not "
                          f"{_describe(file_unit)}")
    if unit is not None and unit != file_unit:
        raise ConfigError(f"{path}: this is a file for unit {file_unit!r}, not {unit!r}")
    validate(file_unit, doc, str(path))
    fields = {k: v for k, v in doc.items() if k != "unit"}
    try:
        cfg = UNITS[file_unit][0].from_dict(fields)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return file_unit, cfg
