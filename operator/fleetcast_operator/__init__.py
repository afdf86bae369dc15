"""The fleetcast operator: reconciles Gateway and Channel resources, autoscales and drains gateway pods."""
