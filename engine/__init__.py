"""The observed serving stack: pool specs, the Ray Serve LLM app (vLLM), the tiny model, faults."""
