"""Drain: move a pod's clients to other pods at a paced rate before the pod goes away."""
