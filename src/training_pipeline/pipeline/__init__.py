"""Train-all orchestration (cross-fitting, stacking, aggregator, comparison) and contract scanning."""
