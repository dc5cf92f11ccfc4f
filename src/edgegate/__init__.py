"""edgegate: a pre-deploy gate for compressed LLMs."""

__version__ = "0.1.0"
