"""A tiny Qwen2 tokenizer built in code: byte-level BPE, Qwen's special tokens, a chat template.

Qwen-Image, Qwen-Image-Edit, FLUX.2 klein and Z-Image all read prompts through Qwen's
tokenizer; the real one has ~150,000 tokens. This one has the 256 byte symbols, a few merges,
and the special tokens those pipelines' prompt templates name, so nothing comes from a hub.
"""

from transformers import Qwen2Tokenizer

from tests.engine.tiny_pipeline import _byte_alphabet

_MERGES = ["t h", "th e", "a n", "i n", "o n", "e r", "r e", "a t", "Ġ a", "Ġ th"]
# What Qwen2.5-VL's chat and vision prompts use; the ids follow the byte and merge tokens.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<think>",
    "</think>",
]
# Ids the tokenizer can produce; a text model's embedding must cover them.
QWEN_VOCAB_SIZE = 256 + len(_MERGES) + len(SPECIAL_TOKENS)

# Qwen's ChatML template, with the `enable_thinking` switch Qwen3 prompts pass (Z-Image,
# FLUX.2 klein): an empty think block when it is off.
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and not enable_thinking %}"
    "{{ '<think>\n\n</think>\n\n' }}{% endif %}{% endif %}"
)


def build_tiny_qwen_tokenizer() -> Qwen2Tokenizer:
    tokens = [*_byte_alphabet(), *("".join(merge.split()) for merge in _MERGES)]
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(merge.split()) for merge in _MERGES],
        unk_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=1024,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tokenizer.chat_template = _CHAT_TEMPLATE
    assert len(tokenizer) == QWEN_VOCAB_SIZE, len(tokenizer)
    return tokenizer
