"""Recipes: per-tensor quantization settings from a TOML file of ordered rules.

A recipe is a list of ``[[rule]]`` tables::

    [[rule]]
    match = "*.weight"        # glob on the full tensor name
    kind = "param"            # "param" | "activation" | "any" (default)
    op = "Conv*"              # ONNX models: glob on the op type (see Matching)
    role = "weight"           # ONNX models: "weight" | "bias" | "other"
    bitwidth = 8
    symmetric = true
    per_channel = true
    skip = false              # true: leave the tensor out of the output

Every other key is a `Spec` field of the same name: ``bitwidth``, ``symmetric``, ``signed``,
``strict_symmetric``, ``per_channel``, ``axis``, ``block_size``, ``block_axis``, ``lpbq``,
``decompressed_bitwidth``, ``analyzer``, ``percentile``, ``num_bins``.

Semantics (decisions where the issue was silent):

- **Layering.** The base `Spec` (the CLI flags) gives the defaults. Every rule that matches a
  tensor applies in file order, each key it sets overriding the same key of earlier rules and
  of the base; keys no matching rule sets keep the base value. ``skip`` layers the same way: a
  later matching rule with ``skip = false`` brings a skipped tensor back, and a rule that does
  not mention ``skip`` leaves it as it was (`Rule.skip` is None then).
- **Matching.** `fnmatch.fnmatchcase` on the full tensor name: case-sensitive, ``*`` crosses
  dots (``*.weight`` matches ``model.layers.0.mlp.up_proj.weight``). ``kind = "param"``
  matches the positional inputs, ``"activation"`` the ``--activations`` dumps, ``"any"`` both.
  A rule needs ``match``, ``op`` or ``role`` (a missing ``match`` is ``"*"``); every key given
  must match. ``op`` is a glob on the ONNX op type: the op that consumes a parameter (a
  MatMul + Add bias: ``Add``), the op that produces an activation (graph inputs have none);
  ``role`` is a parameter's role for that op. Tensors that do not come from an ONNX model
  have neither, so ``op`` / ``role`` rules never match them.
- **Keys are independent.** ``per_channel = false`` does not clear a block size, ``lpbq =
  false`` does not clear ``block_size``, and ``symmetric`` does not set ``signed``: a ``signed``
  left at the base's None keeps following AIMET's default (signed iff symmetric). Whether a
  setting suits a tensor (a block size on a rank-1 tensor, a block size that does not divide
  the axis) is decided by the API when the tensor is encoded, as for CLI flags.
- **No unsetting.** TOML has no null, so a recipe cannot bring ``block_size``, ``num_bins`` or
  ``signed`` back to "none / default" once the CLI or an earlier rule set them; rules that
  need a particular grid should set its keys explicitly (the shipped recipes do).
- **Run-wide settings.** ``symmetric_offset``, ``compute_dtype`` and ``nonfinite`` stay CLI
  flags; recipes do not accept them. Activations are still encoded per tensor whatever
  ``per_channel`` says (the API's rule).
- **When errors surface.** Loading checks the file: TOML syntax, top-level layout, unknown
  keys (with a suggestion), value types, choices, and the range checks `Spec` makes on a single
  key (bitwidth and decompressed_bitwidth 2..32, axis and block_axis -64..63, percentile
  50..100, num_bins 1..65536, block_size 1..2^31-1). Checks that involve several keys
  (``lpbq`` needs ``symmetric`` and ``block_size``, ``strict_symmetric`` needs
  ``symmetric``, ...) can only be made once the base and every matching rule are merged, so
  `Recipe.spec_for` makes them, naming the tensor and the rules that matched it. A skipped
  tensor is never checked.
- **Unmatched rules.** `Recipe.unmatched` reports rules that match no tensor of their kind;
  kinds missing from its argument are not checked, so a caller without activation dumps gets
  no report for activation rules. Rules with ``op`` or ``role`` are never reported: a recipe
  for graphs names op kinds that a given model may not have.
- **Limits.** A recipe file holds at most 1 MiB (`MAX_RECIPE_BYTES`); arrays nested deeper
  than tomllib's recursion allows, or an integer of more than 4300 digits, is invalid TOML.
- **Empty recipes** (no ``[[rule]]``) are an error: a file with no rules is a mistake.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal, NamedTuple, Optional, Union, get_args, get_origin, get_type_hints

from qcalc.core.choices import Kind
from qcalc.core.spec import Spec, int_text
from qcalc.errors import RecipeError, SpecError
from qcalc.io.text import byte_size, quote, read_utf8


def _without_none(kind: Any) -> Any:
    """X for Optional[X], else `kind`."""
    args = [arg for arg in get_args(kind) if arg is not type(None)]
    return args[0] if get_origin(kind) is Union and len(args) == 1 else kind


KINDS = (*get_args(Kind), "any")
RUN_WIDE = ("symmetric_offset", "compute_dtype", "nonfinite")  # CLI flags only
# Every other Spec field is a rule key, of the field's type (TOML has no null: Optional[X]
# takes an X).
SETTING_TYPES = {
    name: _without_none(kind) for name, kind in get_type_hints(Spec).items() if name not in RUN_WIDE
}
SETTING_KEYS = tuple(SETTING_TYPES)
RULE_KEYS = ("match", "kind", "op", "role", *SETTING_KEYS, "skip")
ROLES = ("weight", "bias", "other")  # qcalc.core.graph.Role (not imported: start-up)
# Keys whose range Spec checks on the key alone, whatever the other settings are.
_STANDALONE_CHECKS = (
    "bitwidth", "axis", "percentile", "num_bins", "block_size", "block_axis",
    "decompressed_bitwidth",
)  # fmt: skip
# The largest recipe read: recipes are a handful of rules; 1 MiB holds thousands (a rule per
# tensor of a large LLM), and bounds the time TOML parsing and glob matching can take.
MAX_RECIPE_BYTES = 1 << 20


@dataclass(frozen=True)
class Rule:
    """One ``[[rule]]`` table.

    `index` is 1-based in file order; `settings` maps `Spec` field names to the values the rule
    sets, in file order; `skip` is None when the rule does not mention ``skip``.
    """

    index: int
    match: str
    kind: str = "any"
    settings: dict[str, Any] = field(default_factory=dict, hash=False)
    skip: Optional[bool] = None
    op: Optional[str] = None
    role: Optional[str] = None

    @property
    def label(self) -> str:
        """``rule 3 (match "*.bias")``, as error messages name the rule."""
        return f"rule {self.index} ({_describe(self.match, self.op, self.role)})"

    def matches(self, name: str | Tagged, kind: str) -> bool:
        """True when the rule applies to tensor `name` of `kind` ("param" or "activation");
        a plain name has no op or role."""
        tagged = name if isinstance(name, Tagged) else Tagged(name)
        return (
            self.kind in (kind, "any")
            and fnmatchcase(tagged.name, self.match)
            and (self.op is None or tagged.op is not None and fnmatchcase(tagged.op, self.op))
            and (self.role is None or tagged.role == self.role)
        )


class Tagged(NamedTuple):
    """A tensor as rules see it: its name and, for tensors of an ONNX model, the op type and
    (parameters) the role that `op` and `role` rules match."""

    name: str
    op: Optional[str] = None
    role: Optional[str] = None


@dataclass(frozen=True)
class Recipe:
    """An ordered list of rules read from `path`."""

    path: str
    rules: tuple[Rule, ...]

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "Recipe":
        """Read and validate a recipe file; every problem raises `RecipeError`."""
        where = os.fspath(path)
        text = read_utf8(
            where, RecipeError, RecipeError, "cannot read recipe", "invalid TOML",
            limit=MAX_RECIPE_BYTES,
        )  # fmt: skip
        return cls.from_text(text, where)

    @classmethod
    def from_text(cls, text: str, path: str = "<recipe>") -> "Recipe":
        """Parse and validate recipe `text`; `path` names it in error messages."""
        if len(text) > MAX_RECIPE_BYTES:  # Recipe.load checks bytes; this is for callers
            raise RecipeError(
                f"{path}: is {len(text):,} characters, more than the "
                f"{byte_size(MAX_RECIPE_BYTES)} a recipe may hold"
            )
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise RecipeError(f"{path}: invalid TOML: {error}") from None
        except RecursionError:
            raise RecipeError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
        except ValueError as error:  # an integer of more digits than Python converts
            raise RecipeError(f"{path}: invalid TOML: {_one_line(error)}") from None
        for key in data:
            if key != "rule":
                raise RecipeError(
                    f"{path}: unknown top-level key {_quote(key)} "
                    f"(a recipe holds only [[rule]] tables)"
                )
        tables = data.get("rule")
        if tables is None:
            raise RecipeError(f"{path}: no [[rule]] tables")
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise RecipeError(f'{path}: "rule" must be an array of tables: write [[rule]]')
        return cls(path, tuple(_parse_rule(path, i, t) for i, t in enumerate(tables, 1)))

    def matching(self, name: str | Tagged, kind: str) -> list[Rule]:
        """The rules that apply to tensor `name` of `kind`, in file order."""
        _check_kind(kind)
        return [rule for rule in self.rules if rule.matches(name, kind)]

    def spec_for(self, name: str | Tagged, kind: str, base: Spec) -> Optional[Spec]:
        """The settings for tensor `name` of `kind` ("param" or "activation"), or None to skip it.

        `base` (the CLI flags) is returned as it is when no rule matches; otherwise the matching
        rules' settings, merged in file order, replace its fields. Settings that are invalid
        together raise `RecipeError` naming the tensor and the rules that matched it.
        """
        rules = self.matching(name, kind)
        if not rules:
            return base
        if self.skips(name, kind):
            return None
        merged: dict[str, Any] = {}
        for rule in rules:
            merged.update(rule.settings)
        if not merged:
            return base
        try:
            return dataclasses.replace(base, **merged)
        except SpecError as error:
            labels = [rule.label for rule in rules]
            if len(labels) > 1:
                labels[-2:] = [f"{labels[-2]} and {labels[-1]}"]
            shown = name.name if isinstance(name, Tagged) else name
            raise RecipeError(
                f"{self.path}: {kind} tensor {_quote(shown)}, matched by {', '.join(labels)}: "
                f"{error}"
            ) from None

    def skips(self, name: str | Tagged, kind: str) -> bool:
        """Whether the rules matching tensor `name` of `kind` leave it out: the last of them
        that mentions ``skip`` decides."""
        skip = False
        for rule in self.matching(name, kind):
            if rule.skip is not None:
                skip = rule.skip
        return skip

    def unmatched(self, names_by_kind: Mapping[str, Iterable[str | Tagged]]) -> list[Rule]:
        """Rules that match no tensor of their kind, in file order.

        `names_by_kind` maps "param" and/or "activation" to tensor names. A rule of kind "any"
        is unmatched when it matches no name of any given kind; rules of a kind missing from
        the mapping are not reported (there was nothing of that kind to match).
        """
        names: dict[str, list[str | Tagged]] = {}
        for kind, kind_names in names_by_kind.items():
            _check_kind(kind)
            names[kind] = list(kind_names)
        result = []
        for rule in self.rules:
            if rule.op is not None or rule.role is not None:
                continue  # op kinds a recipe for graphs covers that this model may not have
            kinds = list(names) if rule.kind == "any" else [k for k in names if k == rule.kind]
            if kinds and not any(rule.matches(n, k) for k in kinds for n in names[k]):
                result.append(rule)
        return result


def _parse_rule(path: str, index: int, table: dict[str, Any]) -> Rule:
    match, op, role = (table.get(key) for key in ("match", "op", "role"))
    prefix = f"{path}: rule {index}"
    given = [value for value in (match, op, role) if value is not None]
    if given and all(isinstance(value, str) and value for value in given):
        prefix += f" ({_describe(match or '*', op, role)})"
    for key in table:
        if key not in RULE_KEYS:
            close = difflib.get_close_matches(key, RULE_KEYS, n=1)
            hint = f" (did you mean {_quote(close[0])}?)" if close else ""
            raise RecipeError(f"{prefix}: unknown key {_quote(key)}{hint}")
    if match is None and op is None and role is None:
        raise RecipeError(f'{prefix}: missing key "match" (a tensor-name glob), "op" or "role"')
    for key, value in (("match", match), ("op", op)):
        if value is not None and (not isinstance(value, str) or not value):
            raise RecipeError(f"{prefix}: {key} must be a non-empty string, got {_show(value)}")
    if role is not None and role not in ROLES:
        raise RecipeError(f"{prefix}: role must be one of {_choices(ROLES)}, got {_show(role)}")
    kind = table.get("kind", "any")
    if kind not in KINDS:
        raise RecipeError(f"{prefix}: kind must be one of {_choices(KINDS)}, got {_show(kind)}")
    settings: dict[str, Any] = {}
    skip = None
    for key, value in table.items():
        if key in SETTING_KEYS or key == "skip":
            value = _checked(prefix, key, value, SETTING_TYPES.get(key, bool))
        if key == "skip":
            skip = value
        elif key in SETTING_KEYS:
            settings[key] = value
    for key in _STANDALONE_CHECKS:
        if key in settings:
            try:
                Spec(**{key: settings[key]})
            except SpecError as error:
                raise RecipeError(f"{prefix}: {error}") from None
    return Rule(
        index=index, match=match or "*", kind=kind, settings=settings, skip=skip, op=op, role=role
    )


def _checked(prefix: str, key: str, value: Any, kind: Any) -> Any:
    """`value` of rule key `key` if it has the type `kind` (bool, int, float, a Literal)."""
    if kind is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{prefix}: {key} must be true or false, got {_show(value)}")
    elif kind is int:
        if not _is_int(value):
            raise RecipeError(f"{prefix}: {key} must be an integer, got {_show(value)}")
    elif kind is float:
        if not (_is_int(value) or isinstance(value, float)):
            raise RecipeError(f"{prefix}: {key} must be a number, got {_show(value)}")
        try:
            return float(value)
        except OverflowError:  # an integer beyond float's range: Spec refuses it as such
            return value
    elif get_origin(kind) is Literal:
        if value not in get_args(kind):
            raise RecipeError(
                f"{prefix}: {key} must be one of {_choices(get_args(kind))}, got {_show(value)}"
            )
    else:  # a Spec field of a type recipes do not know yet
        raise TypeError(f"recipe key {key}: unsupported type {kind}")
    return value


def _describe(match: str, op: Optional[str], role: Optional[str]) -> str:
    """How a rule is named in messages: ``match "*.bias"``, ``op "Conv", role "bias"``."""
    parts = [f"match {_quote(match)}"] if match != "*" or not (op or role) else []
    parts += [f"{key} {_quote(value)}" for key, value in (("op", op), ("role", role)) if value]
    return ", ".join(parts)


def _check_kind(kind: str) -> None:
    if kind not in ("param", "activation"):
        raise ValueError(f"unknown tensor kind {kind!r} (param or activation)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _quote(text: str) -> str:
    """A string from the recipe in double quotes, escaped and cut as `quote` does."""
    return quote(text, '"')


def _one_line(error: Exception) -> str:
    """tomllib's ValueError for an over-long integer, shortened to its first sentence."""
    return str(error).split(":")[0].strip().lower() or "invalid value"


def _choices(choices: Iterable[str]) -> str:
    return ", ".join(_quote(choice) for choice in choices)


def _show(value: Any) -> str:
    """A TOML value as the recipe spells it, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return quote(repr(value), "")
    if isinstance(value, int):
        return int_text(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return quote(repr(value), "")
