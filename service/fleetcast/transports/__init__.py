"""ASGI edges: WebSocket and SSE endpoints that only move frames; the session core does the rest."""
