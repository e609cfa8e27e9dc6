"""Station layer: recipes, serials, the ledger, reports, events, the per-unit runner and the
parallel station (docs/DESIGN.md).
"""
