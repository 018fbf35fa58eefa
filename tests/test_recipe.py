"""Recipes: parsing, validation messages, rule layering, skips, unmatched rules, and the
recipes shipped in recipes/."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qcalc.core.spec import Spec
from qcalc.errors import QcalcError, RecipeError
from qcalc.io.recipe import Recipe, Rule, Tagged

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
BASE = Spec()


def recipe(text: str) -> Recipe:
    return Recipe.from_text(text, "recipe.toml")


def error_of(text: str) -> str:
    with pytest.raises(RecipeError) as info:
        recipe(text)
    return str(info.value)


# --- parsing ---------------------------------------------------------------------------------


def test_rules_are_parsed_in_order_with_settings_and_defaults():
    r = recipe(
        """
        [[rule]]
        match = "*.weight"
        kind = "param"
        bitwidth = 4
        symmetric = true
        percentile = 99

        [[rule]]
        match = "*.bias"
        skip = true
        """
    )
    assert r.path == "recipe.toml"
    assert r.rules == (
        Rule(1, "*.weight", "param", {"bitwidth": 4, "symmetric": True, "percentile": 99.0}),
        Rule(2, "*.bias", "any", {}, skip=True),
    )
    assert isinstance(r.rules[0].settings["percentile"], float)
    assert r.rules[0].skip is None
    assert r.rules[1].label == 'rule 2 (match "*.bias")'


def test_every_schema_key_is_accepted():
    r = recipe(
        """
        [[rule]]
        match = "*.weight"
        kind = "param"
        bitwidth = 8
        symmetric = true
        signed = true
        strict_symmetric = false
        per_channel = true
        axis = 0
        block_size = 64
        block_axis = -1
        lpbq = true
        decompressed_bitwidth = 8
        analyzer = "percentile"
        percentile = 99.99
        num_bins = 2048
        convention = "aimet"
        skip = false
        """
    )
    rule = r.rules[0]
    assert rule.skip is False
    spec = r.spec_for("a.weight", "param", BASE)
    assert spec == Spec(
        bitwidth=8,
        symmetric=True,
        signed=True,
        per_channel=True,
        block_size=64,
        lpbq=True,
        analyzer="percentile",
        percentile=99.99,
        num_bins=2048,
    )
    assert set(rule.settings) == {f.name for f in dataclasses.fields(Spec)} - {
        "symmetric_offset",
        "compute_dtype",
        "nonfinite",
    }


def test_inline_array_of_tables_is_accepted():
    r = recipe('rule = [{match = "a", bitwidth = 4}, {match = "b", skip = true}]')
    assert [rule.match for rule in r.rules] == ["a", "b"]


def test_rules_are_hashable():
    r = recipe('[[rule]]\nmatch = "a"\nbitwidth = 4\n')
    assert len({*r.rules, *r.rules}) == 1
    assert hash(r) == hash(recipe('[[rule]]\nmatch = "a"\nbitwidth = 4\n'))


# --- layering --------------------------------------------------------------------------------


def test_later_rule_wins_per_key_and_untouched_keys_keep_the_base():
    r = recipe(
        """
        [[rule]]
        match = "*"
        bitwidth = 8
        symmetric = true
        per_channel = true

        [[rule]]
        match = "*.weight"
        bitwidth = 4

        [[rule]]
        match = "*.other"
        bitwidth = 16
        """
    )
    base = Spec(axis=1, analyzer="sqnr", num_bins=100)
    assert r.spec_for("x.weight", "param", base) == dataclasses.replace(
        base, bitwidth=4, symmetric=True, per_channel=True
    )
    assert r.spec_for("x.act", "activation", base) == dataclasses.replace(
        base, bitwidth=8, symmetric=True, per_channel=True
    )


def test_rule_order_matters():
    first = '[[rule]]\nmatch = "*"\nbitwidth = 8\n'
    second = '[[rule]]\nmatch = "*.weight"\nbitwidth = 4\n'
    assert recipe(first + second).spec_for("a.weight", "param", BASE).bitwidth == 4
    assert recipe(second + first).spec_for("a.weight", "param", BASE).bitwidth == 8


def test_no_matching_rule_returns_the_base_itself():
    r = recipe('[[rule]]\nmatch = "*.weight"\nbitwidth = 4\n')
    base = Spec(bitwidth=6)
    assert r.spec_for("a.bias", "param", base) is base
    assert recipe('[[rule]]\nmatch = "*"\n').spec_for("a", "param", base) is base


def test_glob_matches_the_full_name_case_sensitively():
    r = recipe('[[rule]]\nmatch = "*proj.weight"\nbitwidth = 4\n')
    assert r.spec_for("model.layers.0.self_attn.q_proj.weight", "param", BASE).bitwidth == 4
    assert r.spec_for("model.layers.0.self_attn.q_proj.weight.x", "param", BASE) is BASE
    assert r.spec_for("model.layers.0.self_attn.Q_PROJ.WEIGHT", "param", BASE) is BASE
    r = recipe('[[rule]]\nmatch = "layers.[02].*"\nbitwidth = 4\n')
    assert r.spec_for("layers.2.w", "param", BASE).bitwidth == 4
    assert r.spec_for("layers.1.w", "param", BASE) is BASE
    assert r.spec_for("model.layers.2.w", "param", BASE) is BASE


def test_kind_filtering():
    r = recipe(
        """
        [[rule]]
        match = "*"
        kind = "param"
        bitwidth = 4

        [[rule]]
        match = "*"
        kind = "activation"
        bitwidth = 16

        [[rule]]
        match = "shared*"
        kind = "any"
        per_channel = true
        """
    )
    assert r.spec_for("w", "param", BASE) == Spec(bitwidth=4)
    assert r.spec_for("a", "activation", BASE) == Spec(bitwidth=16)
    assert r.spec_for("shared.w", "param", BASE) == Spec(bitwidth=4, per_channel=True)
    assert r.spec_for("shared.a", "activation", BASE) == Spec(bitwidth=16, per_channel=True)
    assert [rule.index for rule in r.matching("shared.a", "activation")] == [2, 3]


def test_bad_kind_argument_is_a_programming_error():
    r = recipe('[[rule]]\nmatch = "*"\n')
    with pytest.raises(ValueError):
        r.spec_for("a", "any", BASE)
    with pytest.raises(ValueError):
        r.unmatched({"params": ["a"]})


def test_signed_left_unset_keeps_following_symmetric():
    r = recipe('[[rule]]\nmatch = "*"\nsymmetric = true\n')
    spec = r.spec_for("a", "param", BASE)
    assert spec.signed is None and spec.is_signed
    spec = r.spec_for("a", "param", Spec(signed=False))
    assert spec.signed is False and not spec.is_signed


def test_keys_are_independent():
    # per_channel = false and lpbq = false clear nothing else.
    r = recipe('[[rule]]\nmatch = "*"\nper_channel = false\nlpbq = false\n')
    base = Spec(symmetric=True, per_channel=True, block_size=32, lpbq=True, bitwidth=4)
    spec = r.spec_for("a", "param", base)
    assert (spec.per_channel, spec.lpbq, spec.block_size) == (False, False, 32)


# --- skip ------------------------------------------------------------------------------------


def test_skip_and_unskip():
    r = recipe(
        """
        [[rule]]
        match = "*.bias"
        skip = true

        [[rule]]
        match = "keep.*"
        skip = false
        bitwidth = 16

        [[rule]]
        match = "*"
        bitwidth = 4
        """
    )
    assert r.spec_for("conv1.bias", "param", BASE) is None
    assert r.spec_for("conv1.bias", "activation", BASE) is None
    # Rule 2 un-skips; rule 3 does not mention skip and leaves it un-skipped.
    assert r.spec_for("keep.bias", "param", BASE) == Spec(bitwidth=4)
    assert r.spec_for("conv1.weight", "param", BASE) == Spec(bitwidth=4)


def test_later_skip_wins_and_rules_without_skip_do_not_unskip():
    r = recipe(
        """
        [[rule]]
        match = "*"
        skip = false

        [[rule]]
        match = "a*"
        skip = true

        [[rule]]
        match = "*"
        bitwidth = 4
        """
    )
    assert r.spec_for("a.w", "param", BASE) is None
    assert r.spec_for("b.w", "param", BASE) == Spec(bitwidth=4)


def test_skipped_tensor_is_not_checked_for_combinations():
    r = recipe('[[rule]]\nmatch = "*"\nlpbq = true\nskip = true\n')
    assert r.spec_for("a", "param", BASE) is None


def test_skip_kind_filtering():
    r = recipe('[[rule]]\nmatch = "*"\nkind = "activation"\nskip = true\n')
    assert r.spec_for("x", "activation", BASE) is None
    assert r.spec_for("x", "param", BASE) is BASE


# --- combinations ----------------------------------------------------------------------------


def test_combination_from_base_and_several_rules_is_valid():
    # lpbq needs symmetric and block_size: one from the base, one from another rule.
    r = recipe(
        """
        [[rule]]
        match = "*"
        block_size = 64

        [[rule]]
        match = "*proj.weight"
        bitwidth = 4
        lpbq = true
        """
    )
    spec = r.spec_for("q_proj.weight", "param", Spec(symmetric=True, per_channel=True))
    assert (spec.bitwidth, spec.block_size, spec.lpbq, spec.symmetric) == (4, 64, True, True)


def test_invalid_combination_names_tensor_and_rules():
    r = recipe(
        """
        [[rule]]
        match = "*"
        bitwidth = 4

        [[rule]]
        match = "other"
        bitwidth = 8

        [[rule]]
        match = "*proj.weight"
        kind = "param"
        lpbq = true
        block_size = 64
        """
    )
    with pytest.raises(RecipeError) as info:
        r.spec_for("model.q_proj.weight", "param", BASE)
    message = str(info.value)
    assert message.startswith('recipe.toml: param tensor "model.q_proj.weight", matched by ')
    assert 'rule 1 (match "*") and rule 3 (match "*proj.weight")' in message
    assert "rule 2" not in message
    assert message.endswith("--lpbq grids are symmetric and signed: add --symmetric")
    # The base alone is fine for other tensors.
    assert r.spec_for("model.norm.weight", "param", BASE) == Spec(bitwidth=4)


@pytest.mark.parametrize(
    "rule, base, reason",
    [
        ("strict_symmetric = true", Spec(), "--strict-symmetric needs --symmetric"),
        ("symmetric = false", Spec(symmetric=True, strict_symmetric=True), "needs --symmetric"),
        ("lpbq = true\nsymmetric = true", Spec(), "--lpbq needs --block-size"),
        ("bitwidth = 16", Spec(symmetric=True, block_size=4, lpbq=True), "decompressed bitwidth"),
        ("signed = false", Spec(symmetric=True, strict_symmetric=True), "drop --unsigned"),
    ],
)
def test_invalid_combinations(rule, base, reason):
    r = recipe(f'[[rule]]\nmatch = "t"\n{rule}\n')
    with pytest.raises(RecipeError, match=reason) as info:
        r.spec_for("t", "activation", base)
    assert str(info.value).startswith('recipe.toml: activation tensor "t", matched by rule 1')


def test_a_later_rule_can_repair_an_earlier_contradiction():
    r = recipe(
        """
        [[rule]]
        match = "*"
        strict_symmetric = true
        symmetric = false

        [[rule]]
        match = "*"
        symmetric = true
        """
    )
    assert r.spec_for("a", "param", BASE) == Spec(symmetric=True, strict_symmetric=True)


# --- validation errors -----------------------------------------------------------------------


def test_unknown_key_names_file_rule_and_key_with_suggestion():
    message = error_of(
        """
        [[rule]]
        match = "*"
        [[rule]]
        match = "*.weight"
        [[rule]]
        match = "*.bias"
        bitwdth = 8
        """
    )
    assert (
        message == 'recipe.toml: rule 3 (match "*.bias"): unknown key "bitwdth" '
        '(did you mean "bitwidth"?)'
    )


def test_unknown_key_without_suggestion_and_run_wide_keys():
    assert error_of('[[rule]]\nmatch = "a"\nzzz = 1\n') == (
        'recipe.toml: rule 1 (match "a"): unknown key "zzz"'
    )
    for key, value in [("compute_dtype", '"input"'), ("nonfinite", '"ignore"')]:
        message = error_of(f'[[rule]]\nmatch = "a"\n{key} = {value}\n')
        assert f'unknown key "{key}"' in message


INT_KEYS = ["bitwidth", "axis", "block_size", "block_axis", "decompressed_bitwidth", "num_bins"]
BOOL_KEYS = ["symmetric", "signed", "strict_symmetric", "per_channel", "lpbq", "skip"]


@pytest.mark.parametrize("key", INT_KEYS)
@pytest.mark.parametrize(
    "value, shown", [('"8"', '"8"'), ("8.0", "8.0"), ("true", "true"), ("[8]", "an array")]
)
def test_int_keys_reject_other_types(key, value, shown):
    assert error_of(f'[[rule]]\nmatch = "*.bias"\n{key} = {value}\n') == (
        f'recipe.toml: rule 1 (match "*.bias"): {key} must be an integer, got {shown}'
    )


@pytest.mark.parametrize("key", BOOL_KEYS)
@pytest.mark.parametrize("value, shown", [("1", "1"), ('"true"', '"true"'), ("{a = 1}", "a table")])
def test_bool_keys_reject_other_types(key, value, shown):
    assert error_of(f'[[rule]]\nmatch = "w"\n{key} = {value}\n') == (
        f'recipe.toml: rule 1 (match "w"): {key} must be true or false, got {shown}'
    )


@pytest.mark.parametrize(
    "value, shown", [('"99"', '"99"'), ("true", "true"), ("1979-05-27", "1979-05-27")]
)
def test_percentile_must_be_a_number(value, shown):
    assert error_of(f'[[rule]]\nmatch = "w"\npercentile = {value}\n') == (
        f'recipe.toml: rule 1 (match "w"): percentile must be a number, got {shown}'
    )


def test_percentile_accepts_integers():
    r = recipe('[[rule]]\nmatch = "w"\npercentile = 100\n')
    assert r.spec_for("w", "param", BASE).percentile == 100.0


@pytest.mark.parametrize("value, shown", [('"mse"', '"mse"'), ("1", "1"), ('"MinMax"', '"MinMax"')])
def test_bad_analyzer(value, shown):
    assert error_of(f'[[rule]]\nmatch = "w"\nanalyzer = {value}\n') == (
        'recipe.toml: rule 1 (match "w"): analyzer must be one of "minmax", "percentile", '
        f'"sqnr", "tf-enhanced", got {shown}'
    )


@pytest.mark.parametrize("value, shown", [('"params"', '"params"'), ("true", "true")])
def test_bad_kind(value, shown):
    assert error_of(f'[[rule]]\nmatch = "w"\nkind = {value}\n') == (
        f'recipe.toml: rule 1 (match "w"): kind must be one of "param", "activation", "any", '
        f"got {shown}"
    )


def test_missing_match():
    assert error_of('[[rule]]\nmatch = "a"\n[[rule]]\nbitwidth = 8\n') == (
        'recipe.toml: rule 2: missing key "match" (a tensor-name glob), "op" or "role"'
    )


@pytest.mark.parametrize("value, shown", [('""', '""'), ("3", "3"), ('["a", "b"]', "an array")])
def test_bad_match(value, shown):
    assert error_of(f"[[rule]]\nmatch = {value}\n") == (
        f"recipe.toml: rule 1: match must be a non-empty string, got {shown}"
    )


@pytest.mark.parametrize(
    "setting, reason",
    [
        ("bitwidth = 1", "bitwidth 1 is out of range (2..32)"),
        ("bitwidth = 33", "bitwidth 33 is out of range (2..32)"),
        ("percentile = 10", "percentile 10 is out of range (50..100)"),
        ("percentile = nan", "percentile nan is out of range (50..100)"),
        ("num_bins = 0", "number of bins 0 must be at least 1"),
        ("block_size = -4", "block size -4 must be at least 1"),
    ],
)
def test_range_errors_are_reported_per_rule_at_load(setting, reason):
    assert error_of(f'[[rule]]\nmatch = "w"\n[[rule]]\nmatch = "x"\n{setting}\n') == (
        f'recipe.toml: rule 2 (match "x"): {reason}'
    )


def test_combination_keys_are_not_checked_at_load():
    # Valid only with settings from the base or other rules; spec_for decides.
    r = recipe('[[rule]]\nmatch = "w"\nlpbq = true\nstrict_symmetric = true\n')
    assert r.rules[0].settings == {"lpbq": True, "strict_symmetric": True}


def test_bad_toml_syntax_names_the_file_and_tomllib_message():
    message = error_of('[[rule]]\nmatch = "a"\nbitwidth 8\n')
    assert message.startswith("recipe.toml: invalid TOML: ")
    assert "line 3" in message


def test_duplicate_key_is_a_toml_error():
    assert "invalid TOML" in error_of('[[rule]]\nmatch = "a"\nmatch = "b"\n')


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "no [[rule]] tables"),
        ("# only a comment\n", "no [[rule]] tables"),
        ('[[rules]]\nmatch = "a"\n', 'unknown top-level key "rules"'),
        ('bitwidth = 8\n[[rule]]\nmatch = "a"\n', 'unknown top-level key "bitwidth"'),
        ('[rule]\nmatch = "a"\n', "must be an array of tables: write [[rule]]"),
        ("rule = 3\n", "must be an array of tables"),
        ("rule = [1, 2]\n", "must be an array of tables"),
    ],
)
def test_bad_layout(text, reason):
    message = error_of(text)
    assert message.startswith("recipe.toml: ")
    assert reason in message


def test_default_path_in_messages():
    with pytest.raises(RecipeError, match="^<recipe>: rule 1"):
        Recipe.from_text('[[rule]]\nmatch = "a"\nbitwidth = "8"\n')


def test_recipe_error_is_a_qcalc_error_with_exit_code_2():
    assert issubclass(RecipeError, QcalcError)
    assert RecipeError.exit_code == 2


# --- files -----------------------------------------------------------------------------------


def test_load_reads_a_file(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[[rule]]\nmatch = "*.weight"\nbitwidth = 4\n', encoding="utf-8")
    r = Recipe.load(path)
    assert r.path == str(path)
    assert r.spec_for("a.weight", "param", BASE) == Spec(bitwidth=4)
    assert Recipe.load(str(path)) == r


def test_load_errors_name_the_file(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[[rule]]\nmatch = "*.bias"\nbitwidth = "8"\n', encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        Recipe.load(path)
    assert str(info.value) == (
        f'{path}: rule 1 (match "*.bias"): bitwidth must be an integer, got "8"'
    )
    path.write_text("[[rule]\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=f"^{path}: invalid TOML: "):
        Recipe.load(path)


def test_missing_file(tmp_path):
    path = tmp_path / "missing.toml"
    with pytest.raises(RecipeError) as info:
        Recipe.load(path)
    assert str(info.value) == f"{path}: cannot read recipe: no such file or directory"


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(RecipeError, match=f"^{tmp_path}: cannot read recipe: "):
        Recipe.load(tmp_path)


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "r.toml"
    path.write_bytes(b'[[rule]]\nmatch = "\xff"\n')
    with pytest.raises(RecipeError, match=f"^{path}: invalid TOML: not UTF-8"):
        Recipe.load(path)


# --- unmatched -------------------------------------------------------------------------------


UNMATCHED = """
[[rule]]
match = "*.weight"
kind = "param"
[[rule]]
match = "*.bias"
kind = "param"
skip = true
[[rule]]
match = "*"
kind = "activation"
[[rule]]
match = "*norm*"
[[rule]]
match = "conv*.out"
kind = "activation"
[[rule]]
match = "*.out"
kind = "param"
"""


def test_unmatched_rules_by_kind():
    r = recipe(UNMATCHED)
    names = {"param": ["conv1.weight", "fc.weight"], "activation": ["conv1.out", "fc.out"]}
    assert [rule.index for rule in r.unmatched(names)] == [2, 4, 6]
    names["param"].append("ln.norm.weight")
    assert [rule.index for rule in r.unmatched(names)] == [2, 6]


def test_unmatched_any_rule_counts_every_kind():
    r = recipe(UNMATCHED)
    names = {"param": ["conv1.weight"], "activation": ["x.norm.out"]}
    assert 4 not in [rule.index for rule in r.unmatched(names)]


def test_unmatched_skips_kinds_not_given_and_accepts_iterators():
    r = recipe(UNMATCHED)
    params = iter(["conv1.weight", "conv1.bias"])
    assert [rule.index for rule in r.unmatched({"param": params})] == [4, 6]
    everything = r.unmatched({"param": [], "activation": []})
    assert [rule.index for rule in everything] == [1, 2, 3, 4, 5, 6]
    assert r.unmatched({}) == []


# --- shipped recipes -------------------------------------------------------------------------


SHIPPED = sorted(RECIPES.glob("*.toml"))


def test_shipped_recipes_exist():
    assert {p.name for p in SHIPPED} >= {
        "w8a8.toml",
        "w4a16-lpbq.toml",
        "aimet-default-per-channel.toml",
    }


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_recipe_loads_and_every_typical_name_gets_a_valid_spec(path):
    r = Recipe.load(path)
    # the last base sets fields that no rule sets (run-wide ones and the analyzer's)
    run_wide = Spec(analyzer="percentile", percentile=99.9, num_bins=512,
                    compute_dtype="input", nonfinite="ignore", symmetric_offset="zero")  # fmt: skip
    for base in (Spec(), Spec(symmetric=True, strict_symmetric=True), Spec(lpbq=False), run_wide):
        for name in LLM_PARAMS + CNN_PARAMS:
            assert_layered(r, name, "param", base, r.spec_for(name, "param", base))
        for name in ACTIVATIONS:
            assert_layered(r, name, "activation", base, r.spec_for(name, "activation", base))


def assert_layered(r: Recipe, name: str, kind: str, base: Spec, spec: Spec | None) -> None:
    """`spec` is None exactly when the rules skip the tensor; otherwise each field is the
    setting of the last matching rule that sets it, or the base's when no matching rule does."""
    assert (spec is None) == r.skips(name, kind), (name, kind)
    if spec is None:
        return
    wanted = {field.name: getattr(base, field.name) for field in dataclasses.fields(Spec)}
    for rule in r.matching(name, kind):  # file order: later rules override earlier ones
        wanted.update(rule.settings)
    got = {field: getattr(spec, field) for field in wanted}
    assert got == wanted, (name, kind)


LLM_PARAMS = [
    "model.embed_tokens.weight",
    "model.layers.0.input_layernorm.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.q_proj.bias",
    "model.layers.0.self_attn.o_proj.weight",
    "model.layers.0.mlp.down_proj.weight",
    "model.norm.weight",
    "lm_head.weight",
]
CNN_PARAMS = ["conv1.weight", "conv1.bias", "fc.weight", "fc.bias", "bn1.running_mean"]
ACTIVATIONS = ["input", "conv1.out", "model.layers.0.input_layernorm"]

W8_PER_CHANNEL = Spec(bitwidth=8, symmetric=True, signed=True, per_channel=True, axis=0)
A8 = Spec(bitwidth=8, symmetric=False, signed=False, per_channel=False)
A16 = dataclasses.replace(A8, bitwidth=16)
LPBQ4 = Spec(
    bitwidth=4,
    symmetric=True,
    signed=True,
    per_channel=True,
    axis=0,
    block_size=64,
    block_axis=-1,
    lpbq=True,
    decompressed_bitwidth=8,
)


def test_w8a8():
    r = Recipe.load(RECIPES / "w8a8.toml")
    for weight in ["conv1.weight", "fc.weight", "model.layers.0.self_attn.q_proj.weight"]:
        assert r.spec_for(weight, "param", BASE) == W8_PER_CHANNEL
    for bias in ["conv1.bias", "model.layers.0.self_attn.q_proj.bias"]:
        assert r.spec_for(bias, "param", BASE) is None
    for activation in ACTIVATIONS:
        assert r.spec_for(activation, "activation", BASE) == A8
    # Analyzer choices stay with the command line.
    base = Spec(analyzer="percentile", percentile=99.9)
    assert r.spec_for("conv1.weight", "param", base) == dataclasses.replace(
        W8_PER_CHANNEL, analyzer="percentile", percentile=99.9
    )
    # Grid keys are set explicitly, so CLI grid flags do not leak into the recipe's grids.
    loud = Spec(bitwidth=4, symmetric=True, strict_symmetric=True, per_channel=True)
    assert r.spec_for("conv1.weight", "param", loud) == W8_PER_CHANNEL
    assert r.spec_for("conv1.out", "activation", loud) == A8


@pytest.mark.parametrize("name", ["aimet-default-per-channel.toml", "aimet-default.toml"])
def test_aimet_defaults_leave_bitwidths_and_analyzer_to_the_command_line(name):
    r = Recipe.load(RECIPES / name)
    weight = dataclasses.replace(W8_PER_CHANNEL, per_channel=name.endswith("channel.toml"))
    for base in (BASE, Spec(bitwidth=4, analyzer="tf-enhanced")):
        for tensor in ["conv1.weight", "model.layers.0.self_attn.q_proj.weight"]:
            assert r.spec_for(tensor, "param", base) == dataclasses.replace(
                weight, bitwidth=base.bitwidth, analyzer=base.analyzer
            )
        assert r.spec_for("conv1.bias", "param", base) is None  # no graph: no int32 bias
        assert r.spec_for("conv1.out", "activation", base) == dataclasses.replace(
            A8, bitwidth=base.bitwidth, analyzer=base.analyzer
        )


@pytest.mark.parametrize("name", ["aimet-default-per-channel.toml", "aimet-default.toml"])
def test_aimet_defaults_on_graph_tensors(name):
    """The rules that match op types and roles (tests/golden/models/README.md sections 1-5)."""
    r = Recipe.load(RECIPES / name)
    base = Spec(bitwidth=4, analyzer="tf-enhanced")
    weight = r.spec_for(Tagged("0.weight", "Conv", "weight"), "param", base)
    assert (weight.bitwidth, weight.symmetric, weight.signed) == (4, True, True)
    assert weight.per_channel == name.endswith("channel.toml")
    for bias in (Tagged("0.bias", "Conv", "bias"), Tagged("fc.bias", "Add", "bias")):
        spec = r.spec_for(bias, "param", base)  # AIMET's int32 bias: min-max, 32 bits
        assert (spec.bitwidth, spec.symmetric, spec.per_channel, spec.analyzer) == (
            32,
            True,
            False,
            "minmax",
        )
    norm = r.spec_for(Tagged("ln.weight", "LayerNormalization", "weight"), "param", base)
    assert (norm.symmetric, norm.signed, norm.per_channel) == (False, False, False)
    for skipped in (
        Tagged("bn.weight", "BatchNormalization", "weight"),
        Tagged("bn.bias", "BatchNormalization", "bias"),
        Tagged("bn.running_mean", "BatchNormalization", "other"),
        Tagged("W", "MatMul", "weight"),  # a Parameter in torch.matmul
        Tagged("scale", "Mul", "other"),
    ):
        assert r.spec_for(skipped, "param", base) is None, skipped
    assert r.spec_for(Tagged("onnx::MatMul_19", "MatMul", "weight"), "param", base) is not None


def test_op_and_role_rules():
    r = Recipe.from_text(
        '[[rule]]\nop = "Conv*"\nbitwidth = 4\n'
        '[[rule]]\nrole = "bias"\nkind = "param"\nskip = true\n'
        '[[rule]]\nmatch = "x.*"\nop = "Gemm"\nbitwidth = 6\n'
    )
    assert r.spec_for(Tagged("a", "ConvTranspose", "weight"), "param", BASE).bitwidth == 4
    assert r.spec_for(Tagged("a", "Conv", "bias"), "param", BASE) is None
    assert r.spec_for(Tagged("a", "Relu"), "activation", BASE).bitwidth == 8
    assert r.spec_for(Tagged("a"), "param", BASE) == BASE  # no op: op rules never match
    assert r.spec_for("a", "param", BASE) == BASE
    assert r.spec_for(Tagged("x.w", "Gemm", "weight"), "param", BASE).bitwidth == 6
    assert r.spec_for(Tagged("y.w", "Gemm", "weight"), "param", BASE) == BASE
    assert [rule.label for rule in r.rules] == [
        'rule 1 (op "Conv*")',
        'rule 2 (role "bias")',
        'rule 3 (match "x.*", op "Gemm")',
    ]
    assert r.unmatched({"param": ["nothing"]}) == []  # op / role rules are never reported


@pytest.mark.parametrize(
    "table, message",
    [
        ('role = "weights"', 'role must be one of "weight", "bias", "other", got "weights"'),
        ("op = 3", "op must be a non-empty string, got 3"),
        ('op = ""', 'op must be a non-empty string, got ""'),
    ],
)
def test_bad_op_and_role(table, message):
    with pytest.raises(RecipeError) as error:
        Recipe.from_text(f"[[rule]]\n{table}\n", "r.toml")
    assert message in str(error.value)


def test_aimet_default_quantizes_every_non_bias_parameter():
    r = Recipe.load(RECIPES / "aimet-default-per-channel.toml")
    assert r.spec_for("bn1.running_mean", "param", BASE) == W8_PER_CHANNEL
    assert r.spec_for("model.norm.weight", "param", BASE) == W8_PER_CHANNEL


def test_w4a16_lpbq():
    r = Recipe.load(RECIPES / "w4a16-lpbq.toml")
    for proj in ["q", "k", "v", "o"]:
        name = f"model.layers.0.self_attn.{proj}_proj.weight"
        assert r.spec_for(name, "param", BASE) == LPBQ4
    for proj in ["gate", "up", "down"]:
        assert r.spec_for(f"model.layers.31.mlp.{proj}_proj.weight", "param", BASE) == LPBQ4
    assert r.spec_for("model.layers.0.self_attn.qkv_proj.weight", "param", BASE) == LPBQ4
    for name in ["model.embed_tokens.weight", "lm_head.weight"]:
        assert r.spec_for(name, "param", BASE) == W8_PER_CHANNEL
    norm = Spec(bitwidth=16, symmetric=False, signed=False, per_channel=False)
    for name in [
        "model.norm.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.0.post_attention_layernorm.weight",
        "model.layers.0.self_attn.q_norm.weight",
    ]:
        assert r.spec_for(name, "param", BASE) == norm
    assert r.spec_for("model.layers.0.self_attn.q_proj.bias", "param", BASE) is None
    for activation in ACTIVATIONS:
        assert r.spec_for(activation, "activation", BASE) == A16
    # Every rule is used on a typical Llama checkpoint with activation dumps.
    names = {"param": LLM_PARAMS, "activation": ACTIVATIONS}
    assert r.unmatched(names) == []
