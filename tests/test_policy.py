"""Policy loading: schema validation, helpful errors, defaults, presets, `edgegate policy`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgegate.cli import cli
from edgegate.errors import PolicyError
from edgegate.policy import (
    PRESETS,
    load_policy,
    load_preset,
    parse_policy,
    policy_schema,
    preset_text,
)

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_match_repo_copies(name: str) -> None:
    policy = load_preset(name)
    assert policy.name == name
    assert policy.fail_on_inconclusive is True
    # policies/*.yaml in the repo are the same files the package ships for `policy init`.
    assert (REPO / "policies" / f"{name}.yaml").read_text("utf-8") == preset_text(name)
    assert "#" in preset_text(name)  # commented


def test_unknown_key_names_file_line_path_and_closest_key(tmp_path: Path) -> None:
    p = _write(
        tmp_path, "version: 1\nchecks:\n  bbq:\n    required: true\n    max_srs_increse_abs: 0.1\n"
    )
    with pytest.raises(PolicyError) as ei:
        load_policy(p)
    msg = str(ei.value)
    assert str(p) in msg
    assert "line 5" in msg
    assert "checks.bbq.max_srs_increse_abs" in msg
    assert "did you mean 'max_srs_increase_abs'" in msg


def test_typo_in_check_name_is_an_error_not_a_disabled_check() -> None:
    with pytest.raises(
        PolicyError, match=r"checks\.sparsty: unknown key \(did you mean 'sparsity'"
    ):
        parse_policy("version: 1\nchecks:\n  sparsty: {required: true}\n")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "version: 1\nchecks: {bbq: {mode: leter}}\n",
            "checks.bbq.mode: 'leter' is not allowed (did you mean 'letter'?",
        ),
        (
            "version: 1\nchecks: {bbq: {items: many}}\n",
            "checks.bbq.items: expected integer, got string",
        ),
        (
            "version: 1\nchecks: {size: {min_saving: {gguff: 0.2}}}\n",
            "checks.size.min_saving.gguff: unknown key (did you mean 'gguf'?",
        ),
        (
            "version: 1\nchecks: {size: {min_saving: 1.5}}\n",
            "checks.size.min_saving: 1.5 must be < 1",
        ),
        (
            "version: 1\nchecks: {speed: {runtimes: [llama]}}\n",
            "'llama' is not allowed (did you mean 'llamacpp'?",
        ),
        (
            "version: 1\nchecks: {sparsity: {required: maybe}}\n",
            "checks.sparsity.required: expected boolean",
        ),
        ("version: 2\nchecks: {}\n", "version: must be 1, got 2"),
        ("name: x\nchecks: {}\n", "'version' is required"),
        ("version: 1\nchecks: {}\nclaims: {sparsity: 1.5}\n", "claims.sparsity: 1.5 must be <= 1"),
        ("version: 1\nchecks: {}\nclaims: {speed_up: 2}\n", "did you mean 'speedup'?"),
    ],
)
def test_invalid_policies_are_explained(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as ei:
        parse_policy(text, source="t.yaml")
    assert fragment in str(ei.value)
    assert ei.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "policy file is empty"),
        ("- a\n- b\n", "expected a mapping at the top level, got list"),
        ("version: 1\nchecks: {bbq: {items: 3\n", "not valid YAML"),
        ("version: 1\nversion: 1\nchecks: {}\n", "duplicate key 'version'"),
    ],
)
def test_unusable_yaml(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        parse_policy(text)


def test_every_single_character_deletion_of_a_key_is_rejected() -> None:
    # A typo must never silently switch a threshold off (falls back to a default).
    props = policy_schema()["$defs"]["bbq"]["properties"]
    for key in props:
        for i in range(len(key)):
            typo = key[:i] + key[i + 1 :]
            if typo in props:
                continue
            with pytest.raises(PolicyError, match="unknown key"):
                parse_policy(f"version: 1\nchecks:\n  bbq:\n    {typo}: 1\n")


def test_defaults_are_filled_from_the_schema_and_sections_are_frozen() -> None:
    policy = parse_policy("version: 1\nchecks:\n  bbq: {items: 50}\n  size: {}\n")
    assert list(policy.checks) == ["size", "bbq"]  # canonical order, only listed checks
    bbq = policy.checks["bbq"].section
    assert bbq["items"] == 50
    assert bbq["max_srs_increase_abs"] == 0.05
    assert bbq["required"] is True and bbq["runtime"] == "auto" and bbq["data"] is None
    assert policy.checks["size"].section["min_saving"] == 0.0
    assert (
        policy.name == "unnamed"
        and policy.fail_on_inconclusive is True
        and policy.fail_on_skipped is False
    )
    with pytest.raises(TypeError):
        bbq["items"] = 1  # type: ignore[index]
    assert policy.strict().fail_on_skipped is True


def test_disabled_and_absent_checks_do_not_run() -> None:
    policy = parse_policy(
        "version: 1\nchecks:\n  bbq: {enabled: false}\n  sparsity: {required: false}\n"
    )
    assert [c.name for c in policy.enabled_checks()] == ["sparsity"]
    assert policy.checks["sparsity"].required is False


def test_per_format_and_per_runtime_thresholds() -> None:
    policy = parse_policy(
        "version: 1\nchecks:\n  size: {min_saving: {gguf: 0.25, safetensors: 0}}\n  speed: {min_speedup: {mlx: 1.2}}\n"
    )
    assert dict(policy.checks["size"].section["min_saving"]) == {"gguf": 0.25, "safetensors": 0}
    assert dict(policy.checks["speed"].section["min_speedup"]) == {"mlx": 1.2}


def test_load_policy_records_sha256(tmp_path: Path) -> None:
    import hashlib

    p = _write(tmp_path, "version: 1\nchecks: {}\n")
    assert load_policy(p).sha256 == hashlib.sha256(p.read_bytes()).hexdigest()


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "nope.yaml")


def test_cli_validate_reports_every_problem(tmp_path: Path) -> None:
    good = _write(tmp_path, "version: 1\nchecks: {sparsity: {}}\n", "good.yaml")
    bad = _write(
        tmp_path, "version: 1\nchecks:\n  bbq: {mode: x}\n  size: {min_savings: 0}\n", "bad.yaml"
    )
    r = CliRunner().invoke(cli, ["policy", "validate", str(good), str(bad)])
    assert r.exit_code == 2
    assert f"{good}: ok" in r.stdout
    assert "line 3: checks.bbq.mode" in r.stderr and "line 4: checks.size.min_savings" in r.stderr


def test_cli_init_writes_preset_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "mine.yaml"
    runner = CliRunner()
    r = runner.invoke(cli, ["policy", "init", "--preset", "edge-iot", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text("utf-8") == preset_text("edge-iot")
    assert load_policy(out).name == "edge-iot"
    out.write_text("mine", encoding="utf-8")
    r = runner.invoke(cli, ["policy", "init", "-o", str(out)])
    assert r.exit_code != 0 and out.read_text("utf-8") == "mine"
    r = runner.invoke(cli, ["policy", "init", "-o", str(out), "--force"])
    assert r.exit_code == 0 and out.read_text("utf-8") == preset_text("default")


def test_cli_show_fills_defaults(tmp_path: Path) -> None:
    import json

    p = _write(tmp_path, "version: 1\nchecks: {perplexity: {}}\n")
    r = CliRunner().invoke(cli, ["policy", "show", str(p)])
    assert r.exit_code == 0
    assert json.loads(r.stdout)["checks"]["perplexity"]["max_relative_increase"] == 0.05


@pytest.mark.parametrize("check", ["sparsity", "size", "speed", "perplexity", "bbq"])
def test_every_policy_key_is_read_by_its_check(check: str) -> None:
    # The converse of rejecting unknown keys: a key the schema accepts but no check reads
    # would be a threshold that silently does nothing. BBQ's judging lives in edgegate/bbq/.
    src = REPO / "src" / "edgegate"
    files = [
        src / "checks" / f"{check}.py",
        *(sorted((src / "bbq").glob("*.py")) if check == "bbq" else []),
    ]
    source = "\n".join(f.read_text("utf-8") for f in files)
    keys = set(policy_schema()["$defs"][check]["properties"]) - {"enabled", "required"}
    # read as a key ("k") or as a field of the check's typed section (sec.k)
    unread = sorted(
        k for k in keys if f'"{k}"' not in source and not re.search(rf"\.{k}\b", source)
    )
    assert unread == [], (
        f"checks.{check}: {unread} accepted by the schema but never read by {[f.name for f in files]}"
    )


def test_policy_show_accepts_a_preset_name_like_check_does() -> None:
    res = CliRunner().invoke(cli, ["policy", "show", "edge-iot"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["name"] == "edge-iot"


@pytest.mark.parametrize("typo", ["strickt", "defualt", "edge_iot"])
def test_mistyped_preset_name_suggests_the_preset(typo: str) -> None:
    from _support import run_cli

    dense = str(REPO / "fixtures" / "models" / "dense")
    code, out = run_cli("check", dense, dense, "--policy", typo)
    assert code == 2
    assert "did you mean the preset" in out and typo in out


def test_missing_policy_file_is_still_reported_as_a_file() -> None:
    from _support import run_cli

    code, out = run_cli("policy", "show", "policies/nope.yaml")
    assert code == 2 and "policy file not found" in out
