"""Sans-I/O protocol logic: ids, channel names, SSE and WebSocket framing, wire messages, disconnects.

Standard library only and no sockets: everything here is a plain function or value, tested without a server.
"""
