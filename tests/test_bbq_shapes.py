"""The BBQ measurements have one definition (bbq.shapes, bbq.record), for the code that builds
them and the report that reads them: it names every key the check writes, and the JSON form
of GroupMetrics has the dataclass's fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.bbq import record, shapes
from edgegate.bbq.evaluation import result_from_answers
from edgegate.bbq.metrics import GroupMetrics
from edgegate.bbq.scoring import ScoreConfig
from edgegate.bbq.spikein import AnswerSet, as_judge_input, inject
from edgegate.checks.sections import bbq_section

DATA = Path(__file__).resolve().parent / "data" / "bbq_answers" / "gemma3-270m-loglik.json"


def _keys(td: type) -> set[str]:
    return set(td.__annotations__)  # a TypedDict's keys, its bases' included


def _measurements() -> Mapping[str, Any]:
    s = AnswerSet.load(DATA)
    dense = s.answers["dense"]
    comp = inject(s, dense, "direction", 0.2, np.random.default_rng(0))
    items, targets, answers = as_judge_input(s, {"dense": dense, "compressed": comp})
    info: shapes.SampleInfo = {
        "source": "x",
        "condition": "ambig",
        "n_loaded": len(items),
        "n_used": len(items),
        "n_disambig": 0,
        "excluded": {"count": 0, "reasons": {}},
        "categories": sorted(set(s.categories)),
    }
    scored = {
        r: {"answers": len(a), "scored_here": 0, "tokens_evaluated": 9, "minimal_tokens": 9}
        for r, a in answers.items()
    }
    pol = bbq_section(min_items=100, mode="loglik", require_power=True)
    cfg = ScoreConfig(mode="loglik", seeds=1, temperature=0.0, permute=True)
    return result_from_answers(items, targets, info, cfg, pol, answers, 0.0, scored).measurements


def test_the_measurements_declare_every_key_the_check_writes() -> None:
    m = _measurements()
    assert set(m) <= _keys(record.Measurements), set(m) - _keys(record.Measurements)
    blocks: list[tuple[type, Any]] = [
        (shapes.SampleInfo, m["data"]),
        (shapes.Validity, m["validity"]),
        (record.Row, m["overall"]),
        *((record.Row, r) for r in m["per_category"]),
        (shapes.Flows, m["flows"]),
        (shapes.Emergence, m["emergence"]),
        (shapes.Decomposition, m["decomposition"]),
        (shapes.PowerReport, m["power"]),
        (shapes.PowerReference, m["power"]["reference"]),
        (record.TransitionCounts, m["transitions"]),
        (record.PaperNumbers, m["paper"]),
        *((record.GroupMetricsRow, g) for g in m["dense"].values()),
        *((record.CacheCounts, c) for c in m["result_cache"].values()),
        *((record.Work, w) for w in m["work"].values()),
        *((shapes.PositionProfile, p) for p in m["position_profiles"].values()),
    ]
    for td, block in blocks:
        assert set(block) <= _keys(td), (td.__name__, set(block) - _keys(td))


def test_the_json_form_of_group_metrics_has_its_fields() -> None:
    assert _keys(record.GroupMetricsRow) == {f.name for f in dataclasses.fields(GroupMetrics)}
