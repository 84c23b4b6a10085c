"""Project-wide constants. Imports nothing, so every module may import it."""

IGNORE_INDEX = -100
"""Label value that the loss ignores (PyTorch's cross-entropy default)."""

IMAGE_TOKEN = "<image>"
"""Placeholder token in text; the processor/template expands it to the model's image-token count."""

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful medical imaging assistant. Answer questions about the image accurately and concisely."
)
SUMMARY_PROMPT = "Describe the image."
"""The final dialogue turn whose answer is scored against the record's summary."""

ANSWER_TYPES = ("closed", "open")
SPLITS = ("train", "validation", "test")

DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
"""Pixel budget for decoded images (about 50 MP); larger images raise ImageTooLarge before decoding."""
