"""The gateway: an OpenAI-compatible timed proxy in front of the pools (proxy), the SSE relay and the one SSE
event parser, routing and traffic splits, per-request timing.
"""
