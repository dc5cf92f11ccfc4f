"""BBQ bias transitions between a dense and a compressed model.

dataset (load upstream-format BBQ, stratified sampling) -> targets (unknown / biased /
anti-stereotype answer per item) -> scoring (letter or log-likelihood mode through the Backend
protocol, cached in SQLite by cache) -> metrics (SRS, USR, s_DIS, s_AMB, transitions) ->
stats (Wilson, McNemar, Holm, Cohen's h) -> judge (the verdicts) -> evaluation (the check's
result from the answers); the check itself (scoring both models) is edgegate.checks.bbq.
"""
