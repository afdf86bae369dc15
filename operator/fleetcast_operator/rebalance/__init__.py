"""Rebalance after scale-up: pods above their share of clients shed some (pure planner, recorded steps)."""
