"""The Llama-3 dialogue template: exact ids and labels, masking, truncation, mismatch detection."""

from __future__ import annotations

import pytest

from vmed.constants import DEFAULT_SYSTEM_PROMPT, IGNORE_INDEX, IMAGE_TOKEN
from vmed.data.template import (
    EOT,
    DialogueTooLong,
    TemplateError,
    encode_continuation,
    encode_dialogue,
    encode_prompt,
    render_text,
    to_messages,
)
from vmed.model.tokenizer import build_tiny_tokenizer

N_IMG = 4
TURNS = [
    ("Is there a lesion?", "yes"),
    ("On which side is the lesion?", "The lesion is on the left side."),
    ("How many lesions are there?", "There are 2 lesions."),
]


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def _literal_dialogue() -> str:
    """The 3-turn dialogue written out by hand in the Llama-3 format (independent of render_text)."""
    image = "<image>" * N_IMG
    return (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + DEFAULT_SYSTEM_PROMPT + "<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n" + image + "\nIs there a lesion?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nyes<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nOn which side is the lesion?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nThe lesion is on the left side.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHow many lesions are there?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nThere are 2 lesions.<|eot_id|>"
    )


def _expected_labels(tok, text: str, answers: list[str]) -> tuple[list[int], list[int]]:
    """Ids of ``text`` and labels from character offsets: tokens inside an answer span, plus its <|eot_id|>."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    spans, start = [], 0
    for answer in answers:
        a = text.index("<|end_header_id|>\n\n" + answer + EOT, start) + len("<|end_header_id|>\n\n")
        spans.append((a, a + len(answer) + len(EOT)))
        start = a
    labels = [
        t if any(lo <= s and e <= hi for lo, hi in spans) else IGNORE_INDEX
        for t, (s, e) in zip(enc["input_ids"], enc["offset_mapping"])
    ]
    return enc["input_ids"], labels


def test_three_turn_dialogue_exact_ids_and_labels(tok):
    enc = encode_dialogue(tok, TURNS, num_image_tokens=N_IMG)
    ids, labels = _expected_labels(tok, _literal_dialogue(), [a for _, a in TURNS])
    assert enc.input_ids == ids
    assert enc.labels == labels
    assert enc.attention_mask == [1] * len(ids)
    assert (enc.num_turns, enc.dropped_turns) == (3, 0)
    eot = tok.convert_tokens_to_ids(EOT)
    image_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    assert enc.input_ids[0] == tok.convert_tokens_to_ids("<|begin_of_text|>")
    assert enc.input_ids.count(image_id) == N_IMG
    # labelled positions: exactly the answers' tokens and one <|eot_id|> per answer, nothing else
    labelled = [t for t in enc.labels if t != IGNORE_INDEX]
    assert labelled.count(eot) == 3
    assert image_id not in labelled
    assert sum(len(tok(a, add_special_tokens=False)["input_ids"]) + 1 for _, a in TURNS) == len(labelled)


def test_unmasked_label_tokens_decode_to_the_answers(tok):
    enc = encode_dialogue(tok, TURNS, num_image_tokens=N_IMG)
    pieces, current = [], []
    for t in [*enc.labels, IGNORE_INDEX]:
        if t != IGNORE_INDEX:
            current.append(t)
        elif current:
            pieces.append(current)
            current = []
    assert [tok.decode(p) for p in pieces] == [a + EOT for _, a in TURNS]


def test_every_user_turn_and_header_is_masked(tok):
    enc = encode_dialogue(tok, TURNS, num_image_tokens=N_IMG)
    start = tok.convert_tokens_to_ids("<|start_header_id|>")
    for i, t in enumerate(enc.input_ids):
        if t == start:  # a header opens: the header and the role name never carry labels
            assert enc.labels[i] == enc.labels[i + 1] == enc.labels[i + 2] == IGNORE_INDEX
    for q, _ in TURNS:
        q_ids = tok(q, add_special_tokens=False)["input_ids"]
        for i in range(len(enc.input_ids) - len(q_ids) + 1):
            if enc.input_ids[i : i + len(q_ids)] == q_ids:
                assert set(enc.labels[i : i + len(q_ids)]) == {IGNORE_INDEX}


def test_render_text_agrees_with_apply_chat_template(tok):
    for system in (DEFAULT_SYSTEM_PROMPT, "Answer briefly."):
        for n in (0, N_IMG):
            messages = to_messages(TURNS, num_image_tokens=n, system=system)
            assert render_text(TURNS, num_image_tokens=n, system=system) == tok.apply_chat_template(messages, tokenize=False)
    # without a system message the chat template inserts the default, as training does
    no_system = to_messages(TURNS, num_image_tokens=N_IMG, system=None)
    assert tok.apply_chat_template(no_system, tokenize=False) == render_text(TURNS, num_image_tokens=N_IMG)
    assert render_text(TURNS, num_image_tokens=N_IMG) == _literal_dialogue()
    prompt_messages = to_messages(TURNS, num_image_tokens=N_IMG)[:-1]
    assert render_text(TURNS, num_image_tokens=N_IMG, add_generation_prompt=True) == tok.apply_chat_template(
        prompt_messages, tokenize=False, add_generation_prompt=True
    )


def test_whitespace_around_answers_is_trimmed_like_the_chat_template(tok):
    padded = [(" Is there a lesion? ", "  yes \n")]
    assert encode_dialogue(tok, padded, num_image_tokens=0).input_ids == encode_dialogue(
        tok, [("Is there a lesion?", "yes")], num_image_tokens=0
    ).input_ids


def test_truncation_drops_whole_trailing_turns(tok):
    full = encode_dialogue(tok, TURNS, num_image_tokens=N_IMG)
    two = encode_dialogue(tok, TURNS[:2], num_image_tokens=N_IMG)
    for max_length in (len(two), len(full) - 1):
        enc = encode_dialogue(tok, TURNS, num_image_tokens=N_IMG, max_length=max_length)
        assert (enc.num_turns, enc.dropped_turns) == (2, 1)
        assert enc.input_ids == two.input_ids == full.input_ids[: len(two)]
        assert enc.labels == two.labels
        assert enc.input_ids[-1] == tok.convert_tokens_to_ids(EOT) == enc.labels[-1]
    assert encode_dialogue(tok, TURNS, num_image_tokens=N_IMG, max_length=len(full)).dropped_turns == 0


def test_first_turn_that_does_not_fit_is_an_error(tok):
    one = encode_dialogue(tok, TURNS[:1], num_image_tokens=N_IMG)
    with pytest.raises(DialogueTooLong, match="max_length is"):
        encode_dialogue(tok, TURNS, num_image_tokens=N_IMG, max_length=len(one) - 1)


def test_no_image_means_no_image_tokens(tok):
    enc = encode_dialogue(tok, TURNS, num_image_tokens=0)
    assert tok.convert_tokens_to_ids(IMAGE_TOKEN) not in enc.input_ids
    assert enc.input_ids == tok(render_text(TURNS, num_image_tokens=0), add_special_tokens=False)["input_ids"]


def test_mismatch_when_special_tokens_are_split_is_refused(tok):
    splitting = build_tiny_tokenizer()
    splitting.split_special_tokens = True  # the full string no longer maps "<|eot_id|>" etc. to their ids
    with pytest.raises(TemplateError, match="tokenization mismatch in the system prompt"):
        encode_dialogue(splitting, TURNS, num_image_tokens=N_IMG)


def test_mismatch_is_located_at_its_turn(tok, monkeypatch):
    """A tokenizer that encodes one question differently inside the full string than on its own."""
    import vmed.data.template as template

    real = template._Encoder.text

    def text(self, s):
        ids = real(self, s)
        return ids[:-1] if s == "\n\nOn which side is the lesion?" else ids  # a piece loses its last token

    monkeypatch.setattr(template._Encoder, "text", text)
    for system in (DEFAULT_SYSTEM_PROMPT, None):
        with pytest.raises(TemplateError, match="tokenization mismatch in turn 2"):
            encode_dialogue(tok, TURNS, num_image_tokens=0, system=system)


def test_token_straddling_the_answer_boundary_is_refused():
    """A tokenizer without pre-tokenization that merges "\\n\\n" with the answer's first letters."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from vmed.model.tokenizer import SPECIAL_TOKENS

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(["\n\nyes"] * 50 + ["Is there a lesion?"] * 5, trainer=trainer)
    bad = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|begin_of_text|>", eos_token=EOT)
    with pytest.raises(TemplateError, match=r"tokenization mismatch in turn 1 \(question 'Is there a lesion\?'\)"):
        encode_dialogue(bad, [("Is there a lesion?", "yes")], num_image_tokens=0)


def test_tokenizer_without_llama3_tokens_is_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "yes": 1}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    plain = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    with pytest.raises(TemplateError, match="has no token '<|begin_of_text|>'"):
        encode_dialogue(plain, [("q", "yes")], num_image_tokens=0)


def test_encode_prompt_matches_rendered_generation_prompt(tok):
    history = TURNS[:2]
    question = TURNS[2][0]
    ids = encode_prompt(tok, history, question, num_image_tokens=N_IMG)
    text = render_text([*history, (question, "")], num_image_tokens=N_IMG, add_generation_prompt=True)
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    first = encode_prompt(tok, [], TURNS[0][0], num_image_tokens=N_IMG)
    assert first.count(tok.convert_tokens_to_ids(IMAGE_TOKEN)) == N_IMG
    full = encode_dialogue(tok, TURNS, num_image_tokens=N_IMG).input_ids
    assert full[: len(first)] == first


def test_continuation_equals_prompt_with_history(tok):
    q1, a1 = TURNS[0]
    q2 = TURNS[1][0]
    answer_ids = tok(a1, add_special_tokens=False)["input_ids"]
    eot = tok.convert_tokens_to_ids(EOT)
    expected = encode_prompt(tok, [(q1, a1)], q2, num_image_tokens=N_IMG)
    prefix = encode_prompt(tok, [], q1, num_image_tokens=N_IMG) + answer_ids
    assert prefix + encode_continuation(tok, False, q2) == expected
    assert prefix + [eot] + encode_continuation(tok, True, q2) == expected


def test_bad_turns_are_user_errors(tok):
    from vmed.errors import UserInputError

    with pytest.raises(UserInputError, match="at least one"):
        encode_dialogue(tok, [], num_image_tokens=0)
    with pytest.raises(UserInputError, match="turn 2: the question is empty"):
        encode_dialogue(tok, [("q", "a"), ("  ", "b")], num_image_tokens=0)
