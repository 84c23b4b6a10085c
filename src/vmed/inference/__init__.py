"""vmed.inference: the one inference engine for chat, the HTTP API, the web UI and evaluation.

``Engine.from_pretrained(path)`` loads a model dir, exported dir or training run dir once;
``engine.generate / stream / generate_batch / dialogue / dialogue_naive / session`` answer.
"""

from vmed.inference.engine import Engine, Item
from vmed.inference.params import ContextLengthExceeded, GenParams, GenResult
from vmed.inference.session import ChatSession
from vmed.inference.streaming import GenerationStream

__all__ = ["Engine", "Item", "GenParams", "GenResult", "ContextLengthExceeded", "ChatSession", "GenerationStream"]
