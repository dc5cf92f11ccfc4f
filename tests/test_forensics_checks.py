"""The sparsity and size checks (policy verdicts) on the fixture models."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgegate import checks
from edgegate.checks.base import CheckContext, Status
from edgegate.checks.sections import SizeSection

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "fixtures" / "models"
pytestmark = pytest.mark.skipif(not (MODELS / "claimed50").exists(), reason="fixtures not built")


def ctx(
    name: str,
    section: dict | None = None,
    claims: dict | None = None,
    dense: bool = False,
    check: str = "sparsity",
) -> CheckContext:
    return CheckContext(
        compressed_path=MODELS / name,
        dense_path=MODELS / "dense" if dense else None,
        section=checks.section(check, section or {}),
        claims=claims or {},
    )


def verdict(res, name):  # type: ignore[no-untyped-def]
    return next(v for v in res.verdicts if v.name == name)


def test_claimed50_fails_with_reason_from_metadata_claim() -> None:
    c = ctx("claimed50", {"claim_tolerance": 0.02, "require_claim": False})
    res = checks.run("sparsity", c)
    assert res.status is Status.FAIL
    v = verdict(res, "sparsity_claim")
    assert v.status is Status.FAIL and v.n == 98304
    assert v.observed == pytest.approx(0.5 - 1 / 3) and v.effect_size == pytest.approx(1 / 3 - 0.5)
    assert "pruning_meta.json" in v.message and "kinds left dense: o_proj, down_proj" in v.message
    assert verdict(res, "finite_weights").status is Status.PASS
    assert c.shared.scan_compressed.prunable.zeros == 32768
    # the size check reuses the scan instead of reading the checkpoint again
    first = c.shared.scan_compressed
    checks.run("size", replace(c, section=SizeSection.from_policy({})))
    assert c.shared.scan_compressed is first


def test_policy_claim_wins_and_can_pass() -> None:
    res = checks.run(
        "sparsity", ctx("claimed50", {"claim_tolerance": 0.02}, claims={"sparsity": 1 / 3})
    )
    assert res.status is Status.PASS
    assert verdict(res, "sparsity_claim").message.startswith(
        "actual 33.3% vs claimed 33.3% (policy/cli)"
    )


def test_no_claim_is_skipped_not_passed_unless_required() -> None:
    res = checks.run("sparsity", ctx("dense", {"claim_tolerance": 0.02, "require_claim": False}))
    v = verdict(res, "sparsity_claim")
    assert v.status is Status.SKIPPED and "measured 0.0%" in v.message and v.n == 98304
    # skipped verdicts do not count towards a check's status; the finite-weights verdict does
    assert verdict(res, "finite_weights").status is Status.PASS and res.status is Status.PASS
    assert res.measurements["sparsity"]["overall"]["zeros"] == 64
    res2 = checks.run("sparsity", ctx("dense", {"require_claim": True}))
    assert res2.status is Status.FAIL and "require_claim" in verdict(res2, "sparsity_claim").message


def test_size_dense_format_saves_nothing() -> None:
    res = checks.run(
        "size",
        ctx(
            "magnitude50",
            {"min_saving": 0.1, "claim_tolerance": 0.05},
            claims={"size_saving": 0.5},
            check="size",
        ),
    )
    assert res.status is Status.FAIL
    ms = verdict(res, "min_saving")
    assert (
        ms.status is Status.FAIL
        and ms.observed == 0.0
        and ms.n == 164160
        and ms.scope == "safetensors"
    )
    assert verdict(res, "size_claim").status is Status.FAIL
    ok = checks.run("size", ctx("magnitude50", {"min_saving": 0.0}, check="size"))
    assert verdict(ok, "min_saving").status is Status.PASS
    assert verdict(ok, "size_claim").status is Status.SKIPPED


def test_size_per_format_threshold_and_against_dense() -> None:
    res = checks.run("size", ctx("nm24", {"min_saving": {"gguf": 0.3}}, dense=True, check="size"))
    assert verdict(res, "min_saving").status is Status.SKIPPED
    dense_bytes = (MODELS / "dense" / "model.safetensors").stat().st_size
    comp_bytes = (MODELS / "nm24" / "model.safetensors").stat().st_size
    # same format: judged on the tensor data; the files' sizes are reported beside it
    dense_t = res.measurements["dense_size"]["tensor_bytes"]
    comp_t = res.measurements["size"]["tensor_bytes"]
    assert res.measurements["saving"] == pytest.approx(1 - comp_t / dense_t)
    basis = res.measurements["saving_basis"]
    assert "dense original" in basis and f"{1 - comp_bytes / dense_bytes:.1%} saved" in basis


def test_size_metadata_only_growth_is_not_a_bigger_model(tmp_path: Path) -> None:
    """A pruned GGUF written by a converter that names the model after its folder is a few
    bytes larger than its dense twin (`general.name`), with byte-identical tensor data: it
    saved nothing (min_saving 0.1 fails) but it did not grow (min_saving 0.0 passes), and the
    report says where the extra bytes are. Real files, written by the gguf package."""
    import numpy as np
    from gguf import GGUFWriter

    w = np.arange(64 * 32, dtype=np.float16).reshape(64, 32)
    paths = {}
    for name in ("dense", "a-much-longer-folder-name-of-the-pruned-copy"):
        p = tmp_path / f"{name}.gguf"
        g = GGUFWriter(str(p), "llama")
        g.add_name(name)
        g.add_tensor("blk.0.ffn_down.weight", w)
        g.write_header_to_file()
        g.write_kv_data_to_file()
        g.write_tensors_to_file()
        g.close()
        paths[name] = p
    comp, dense = paths["a-much-longer-folder-name-of-the-pruned-copy"], paths["dense"]
    assert comp.stat().st_size > dense.stat().st_size

    def run(min_saving: float):  # type: ignore[no-untyped-def]
        return checks.run(
            "size",
            CheckContext(
                compressed_path=comp,
                dense_path=dense,
                section=SizeSection.from_policy({"min_saving": min_saving}),
                claims={},
            ),
        )

    ok = run(0.0)
    assert verdict(ok, "min_saving").status is Status.PASS and ok.measurements["saving"] == 0.0
    extra = comp.stat().st_size - dense.stat().st_size
    assert f"of which +{extra:,} bytes outside the tensors" in ok.measurements["saving_basis"]
    assert verdict(run(0.1), "min_saving").status is Status.FAIL


def test_claim_source_from_the_runner() -> None:
    c = ctx("claimed50", {"claim_tolerance": 0.02}, claims={"sparsity": 0.5})
    c.claim_sources = {"sparsity": "checkpoint metadata (pruning_meta.json)"}
    v = verdict(checks.run("sparsity", c), "sparsity_claim")
    assert "(checkpoint metadata (pruning_meta.json))" in v.message and v.status is Status.FAIL
    assert (
        c.shared.scan_compressed.sparsity_claim.source == "checkpoint metadata (pruning_meta.json)"
    )
