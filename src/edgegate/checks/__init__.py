"""Checks: each module exposes ``run(ctx: CheckContext) -> CheckResult``."""
