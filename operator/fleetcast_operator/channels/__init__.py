"""The Channel resource: its policy for the pods and the status computed from what they report."""
