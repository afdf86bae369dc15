"""Local fan-out: which sessions of this pod subscribe to which channel, and one encoding per batch."""
