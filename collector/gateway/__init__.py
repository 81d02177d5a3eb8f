"""The gateway: an OpenAI-compatible timed proxy in front of the pools (proxy), the request in flight and its
record (exchange), the streamed response (streaming) with its SSE relay (relay) and the one SSE event parser
(sse), routing and traffic splits, per-request timing.
"""
