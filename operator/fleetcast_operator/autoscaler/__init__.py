"""Autoscaling on live connections: a pure policy and the signals it reads; the
Deployment is changed through :mod:`fleetcast_operator.gateway.scale`."""
