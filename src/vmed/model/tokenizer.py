"""Tokenizers: the offline-trained tiny BPE tokenizer, and preparing any tokenizer for vmed.

``build_tiny_tokenizer()`` trains a small byte-level BPE (the ``tokenizers`` library, no network)
on a built-in corpus of medical/phantom vocabulary, with the Llama-3 pre-tokenizer regex and
special tokens, so the tiny preset tokenizes like a real Llama-3 model (only with a smaller vocab).
Training is deterministic and takes well under a second.

``prepare_tokenizer(tok)`` makes any tokenizer usable by ``vmed.data.template``: it adds the
Llama-3 special tokens it lacks (e.g. SmolLM2's ChatML tokenizer), the ``<image>`` token and a pad
token, sets eos to ``<|eot_id|>`` (the end of an assistant turn) and the Llama-3 chat template.
"""

from __future__ import annotations

import itertools
from typing import Any

from vmed.constants import IMAGE_TOKEN
from vmed.data.template import BOS, END_HEADER, END_OF_TEXT, EOT, LLAMA3_CHAT_TEMPLATE, START_HEADER

# lazy: tokenizers and transformers are imported inside the functions that use them, so importing this module stays light
__all__ = ["EMBEDDING_ALIASES", "PAD_TOKEN", "SPECIAL_TOKENS", "build_tiny_tokenizer", "prepare_tokenizer", "tiny_corpus"]

PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = (BOS, END_OF_TEXT, START_HEADER, END_HEADER, EOT, IMAGE_TOKEN, PAD_TOKEN)
"""Special tokens of every vmed tokenizer (Llama-3's, the image placeholder and a pad token)."""

EMBEDDING_ALIASES = {
    BOS: "<|endoftext|>",
    START_HEADER: "<|im_start|>",
    END_HEADER: "\u010a",
    EOT: "<|im_end|>",
    END_OF_TEXT: "<|endoftext|>",
}
"""Existing tokens whose embedding initialises an added Llama-3 token (ChatML names, as in SmolLM2;
``\u010a`` is the byte-level token of a newline), so a ChatML-trained LM reads the Llama-3 format
roughly as its own from the start. Tokens without a counterpart get the mean embedding."""

LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Llama-3's pre-tokenizer regex (tiktoken cl100k style): newlines split from the words after them."""

_MODALITIES = ("CT", "MRI", "X-ray", "ultrasound", "PET")
_ORGANS = ("brain", "lung", "liver", "kidney", "heart", "chest", "abdomen", "spine", "pelvis", "head")
_SIDES = ("left", "right", "both sides", "center")
_SIZES = ("small", "medium", "large", "tiny")
_BRIGHTNESS = ("bright", "dark", "hyperdense", "hypodense", "hyperintense", "hypointense")
_QUESTIONS = (
    "Is there a lesion?",
    "Is there a lesion in the {organ}?",
    "On which side is the lesion?",
    "How many lesions are there?",
    "What modality is this?",
    "What organ is shown?",
    "Is the lesion bright or dark?",
    "How large is the lesion?",
    "Is this image normal?",
    "Describe the image.",
    "Are regions of the {organ} abnormal?",
    "Where is the abnormality located?",
)
_ANSWERS = (
    "yes", "no", "Yes.", "No.", "left", "right", "both", "none", "normal", "abnormal",
    "There is no lesion.", "There is one lesion.", "There are {n} lesions.", "The image is a {modality} scan.",
    "A {size} {brightness} lesion on the {side} side of the {organ}.",
    "{modality} of the {organ} showing {n} {size} lesions on the {side}.",
    "No acute abnormality is seen in the {organ}.",
)
_EXTRA = (
    "You are a helpful medical imaging assistant. Answer questions about the image accurately and concisely.",
    "axial coronal sagittal slice contrast enhanced mass nodule tumor cyst fracture effusion edema",
    "radiograph radiology pathology patient finding findings impression diagnosis benign malignant",
    "organ body outline tissue bone fat fluid air density intensity signal window level",
    "system user assistant phantom synthetic image question answer summary the a an of in on with and or is are was",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 20 50 100 mm cm % . , ? ! : ; ( ) - ' \"",
)


def tiny_corpus() -> list[str]:
    """The built-in training text of the tiny tokenizer (deterministic, a few hundred lines)."""
    lines = list(_EXTRA)
    fills = itertools.product(_MODALITIES, _ORGANS, _SIDES[:2], _SIZES[:3], _BRIGHTNESS[:2], range(4))
    for k, (modality, organ, side, size, brightness, n) in enumerate(fills):
        if k % 3:
            continue
        q = _QUESTIONS[k % len(_QUESTIONS)].format(organ=organ)
        a = _ANSWERS[k % len(_ANSWERS)].format(
            n=n, modality=modality, size=size, brightness=brightness, side=side, organ=organ
        )
        lines.append(f"{q} {a}")
    return lines


def build_tiny_tokenizer(vocab_size: int = 512) -> Any:
    """Train the tiny byte-level BPE tokenizer offline and wrap it as a ``PreTrainedTokenizerFast``.

    It has the Llama-3 special tokens (bos ``<|begin_of_text|>``, eos ``<|eot_id|>``), ``<image>``,
    pad ``<|pad|>`` and the Llama-3 chat template; like Llama-3 it prepends bos when called with
    ``add_special_tokens=True``. ``len(tokenizer) <= vocab_size``; same corpus → same tokenizer.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tiny_corpus(), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD_TOKEN,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = LLAMA3_CHAT_TEMPLATE
    return fast


def prepare_tokenizer(tokenizer: Any) -> list[str]:
    """Make ``tokenizer`` (a fast HF tokenizer, changed in place) fit the vmed template.

    Adds the Llama-3 special tokens and ``<image>`` where missing, a pad token when there is none,
    sets eos to ``<|eot_id|>``, bos to ``<|begin_of_text|>`` and the Llama-3 chat template. Returns
    the tokens that were added (the caller resizes the model's embeddings to ``len(tokenizer)``).
    """
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    wanted = [BOS, END_OF_TEXT, START_HEADER, END_HEADER, EOT, IMAGE_TOKEN]
    if tokenizer.pad_token is None or tokenizer.pad_token in (EOT, END_OF_TEXT):
        wanted.append(PAD_TOKEN)
    added = [t for t in wanted if t not in vocab]
    if added:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in added]},
            replace_extra_special_tokens=False,
        )
    tokenizer.bos_token = BOS
    tokenizer.eos_token = EOT
    if PAD_TOKEN in wanted:
        tokenizer.pad_token = PAD_TOKEN
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    return added
