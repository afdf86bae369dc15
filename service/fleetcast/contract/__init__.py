"""What the gateway pods and the operator share, and nothing else.

Standard library only: the operator imports this package and nothing more from the service, so the two images
can evolve separately as long as this contract holds. It names Redis keys, the heartbeat record a pod writes,
the channel policy the operator writes, and the commands the operator sends to pods.
"""
