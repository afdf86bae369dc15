"""Autoscaling on live connections: a pure policy, the signals it reads and the actuator that applies it."""
