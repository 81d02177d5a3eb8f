"""Clients of a gateway: the completions client that the canary, the evals and the gate use."""
