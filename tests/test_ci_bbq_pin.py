"""The GitHub workflow fetches BBQ at a pinned commit and checks SHA256SUMS: the sums must be
those of the items the suite is developed against (../shared/bbq/data), or GitHub and local
runs would test different data."""

from __future__ import annotations

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUMS = ROOT / ".github" / "bbq" / "SHA256SUMS"
DATA = ROOT.parent / "shared" / "bbq" / "data"


def test_pinned_sums_match_the_shared_bbq_files() -> None:
    pinned = dict(reversed(line.split()) for line in SUMS.read_text().splitlines() if line.strip())
    local = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(DATA.glob("*.jsonl"))
    }
    assert local, f"no BBQ files in {DATA}"
    assert pinned == local


def test_workflow_fetches_before_running_the_suite() -> None:
    wf = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    assert wf.index(".github/bbq/fetch.sh") < wf.index(".ci/run")
