"""vmed: a toolkit for medical visual dialogue models (VMed-Llama3 / Vision-BioLLM)."""

__version__ = "0.1.0"
__all__ = ["__version__"]
