"""`edgegate study`: many compressed variants of one dense model through one gate, one table,
one picture (see ``spec`` for the YAML grid, ``run`` for resuming, ``table`` for the outputs)."""

from edgegate.study.spec import StudySpec, Variant, load_spec

__all__ = ["StudySpec", "Variant", "load_spec"]
