"""The Gateway resource: its validated spec and the Deployment, Service and PodDisruptionBudget it implies."""
