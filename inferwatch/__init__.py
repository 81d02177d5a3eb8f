"""inferwatch: observability and output-drift validation for LLM serving pools."""

__version__ = "0.1.0"
