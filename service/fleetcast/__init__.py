"""fleetcast: a realtime messaging gateway fleet (WebSocket and SSE) over Redis Streams."""

__version__ = "0.1.0"
