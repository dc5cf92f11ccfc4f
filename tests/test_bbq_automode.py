"""``mode: auto`` for BBQ on tiny models built here (real transformers checkpoints): loglik for a
model without a chat template, letter with rotation for one with, and the report says which
and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("sentencepiece")

import _tiny_arch as T

from edgegate import checks
from edgegate.checks.base import CheckContext
from edgegate.checks.sections import bbq_section
from edgegate.report import bbq_table
from edgegate.settings import RunSettings

REPO = Path(__file__).resolve().parents[1]
TEXT = (REPO / "src" / "edgegate" / "data" / "eval_text.txt").read_text(encoding="utf-8")
ITEMS = REPO / "fixtures" / "bbq"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """{"chat": (dense, pruned), "base": (dense, pruned)}: the same tiny Llama pair, once with the
    tokenizer's chat template and once with it removed (a base model's files)."""
    root = tmp_path_factory.mktemp("automode")
    dense, pruned = T.build_pair("llama", root, T.build_tokenizer(root / "tok", TEXT))
    out = {"chat": (dense, pruned)}
    base = []
    for src in (dense, pruned):
        dst = root / f"{src.name}-base"
        dst.mkdir()
        for f in src.iterdir():
            dst.joinpath(f.name).write_bytes(f.read_bytes())
        cfg = json.loads((dst / "tokenizer_config.json").read_text())
        jinja = dst / "chat_template.jinja"  # where transformers >= 4.43 saves it
        assert (
            cfg.pop("chat_template", None) or jinja.is_file()
        )  # the tiny tokenizer has one; this copy must not
        (dst / "tokenizer_config.json").write_text(json.dumps(cfg))
        jinja.unlink(missing_ok=True)
        base.append(dst)
    out["base"] = (base[0], base[1])
    return out


def _run(pair: tuple[Path, Path], tmp_path: Path, **section: Any) -> Any:
    sec = {
        "runtime": "transformers",
        "mode": "auto",
        "data": str(ITEMS),
        "items": 0,
        "disambig_items": 0,
        "min_items": 5,
        "min_items_per_category": 2,
        "per_category": False,
        **section,
    }
    ctx = CheckContext(
        compressed_path=pair[1],
        dense_path=pair[0],
        section=bbq_section(sec),
        settings=RunSettings(threads=1, cache_dir=str(tmp_path / "cache")),
    )
    return checks.run("bbq", ctx)


def test_base_model_gets_loglik(models: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    r = _run(models["base"], tmp_path)
    m = r.measurements
    assert m["config"]["mode"] == "loglik" and m["validity"]["mode"] == "loglik"
    assert (
        m["mode_choice"]["requested"] == "auto" and "no chat template" in m["mode_choice"]["reason"]
    )
    assert m["position_profiles"]["dense"]["rotations"] == [0]  # loglik: no letters, no rotations
    assert "Mode: loglik (requested auto)" in "\n".join(bbq_table.sections_markdown(m))


def test_chat_model_gets_letter_with_rotation(
    models: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    # permute_options: false in the policy is overridden: auto's letter mode always rotates
    r = _run(models["chat"], tmp_path, permute_options=False)
    m = r.measurements
    assert m["config"]["mode"] == "letter" and m["config"]["permute"] is True
    assert m["position_profiles"]["dense"]["rotations"] == [0, 1, 2]
    assert "has a chat template" in m["mode_choice"]["reason"]
    assert "Mode: letter (requested auto)" in bbq_table.sections_html(m)


def test_explicit_mode_is_kept_and_not_reported_as_a_choice(
    models: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    r = _run(models["chat"], tmp_path, mode="loglik")
    assert r.measurements["config"]["mode"] == "loglik" and "mode_choice" not in r.measurements
