"""Drain-aware scale-down: which pods go (pure planner) and the steps that move their clients away first."""
