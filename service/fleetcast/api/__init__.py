"""Plain HTTP endpoints: publish, history, channel info, health, readiness, the demo page."""
