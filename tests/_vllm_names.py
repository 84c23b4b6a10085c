"""What vLLM's LLaVA loader does with a checkpoint's weight names, derived from vLLM's source (it cannot run here).

Shared by ``unit/test_model_parity.py`` and ``integration/test_export.py`` (``tests/conftest.py`` puts ``tests/``
on ``sys.path``).
"""

from __future__ import annotations

import json
from pathlib import Path

# ---- vLLM's LLaVA loader, derived from its source ------------------------------------------------------------
# Read with the search tools from github.com/vllm-project/vllm (vLLM cannot be installed here):
#   vllm/model_executor/models/llava.py  (commit 35d3c24b)  LlavaForConditionalGeneration:
#     - hf_to_vllm_mapper.orig_to_new_prefix: "model.language_model." -> "language_model.model.",
#       "model.vision_tower." -> "vision_tower.", "model.multi_modal_projector." -> "multi_modal_projector.",
#       "lm_head." -> "language_model.lm_head." (first matching prefix, applied once; WeightsMapper._map_name)
#     - modules: vision_tower = vLLM CLIPVisionModel built by init_vision_tower_for_llava with
#       num_hidden_layers = _get_layer_index(vision_feature_layer) (num_layers + layer + 1 for a negative layer)
#       and require_post_norm=False; multi_modal_projector = linear_1/linear_2 (bias = multimodal_projector_bias);
#       language_model = the text_config.architectures model (LlamaForCausalLM).
#     - load_weights: AutoWeightsLoader(self).load_weights(weights, mapper=hf_to_vllm_mapper)
#     - the class declares SupportsMultiModal and SupportsPP but not SupportsLoRA (see docs/serve.md on --enable-lora)
#   vllm/model_executor/models/utils.py  AutoWeightsLoader: splits a name at its first dot; the part must be a child
#     module (recursed into, or its own load_weights is called) or a parameter, else ValueError
#     "There is no module or parameter named '<prefix>'".
#   vllm/model_executor/models/clip.py  (commit 85f1f913): CLIPVisionModel has one child, vision_model
#     (CLIPVisionTransformer: embeddings.{class_embedding, patch_embedding, position_embedding}, pre_layrnorm,
#     encoder.layers.N.{self_attn.qkv_proj, self_attn.out_proj, layer_norm1, mlp.fc1, mlp.fc2, layer_norm2},
#     post_layernorm only when required). Its load_weights skips post_layernorm.* when there is none and
#     encoder.layers.N with N >= the layers built, and loads q_proj/k_proj/v_proj into qkv_proj (substring).
#   vllm/model_executor/models/llama.py  (commit e06c9ba2): LlamaForCausalLM = model (LlamaModel) + lm_head
#     (skipped when tie_word_embeddings); LlamaModel.load_weights skips rotary_emb.inv_freq and loads
#     .q_proj/.k_proj/.v_proj into .qkv_proj and .gate_proj/.up_proj into .gate_up_proj; biases per
#     attention_bias / mlp_bias.
_VLLM_PREFIXES = {
    "model.language_model.": "language_model.model.",
    "model.vision_tower.": "vision_tower.",
    "model.multi_modal_projector.": "multi_modal_projector.",
    "lm_head.": "language_model.lm_head.",
}


def _vision_layers_built(config: dict) -> int:
    layer, total = config["vision_feature_layer"], config["vision_config"]["num_hidden_layers"]
    return total + layer + 1 if layer < 0 else layer


def vllm_llava_parameters(config: dict) -> set[str]:
    """The parameter names vLLM's LlavaForConditionalGeneration (CLIP tower, Llama LM) builds for ``config.json``."""
    text = config["text_config"]
    names = {f"vision_tower.vision_model.{p}" for p in (
        "embeddings.class_embedding", "embeddings.patch_embedding.weight", "embeddings.position_embedding.weight",
        "pre_layrnorm.weight", "pre_layrnorm.bias")}
    for i in range(_vision_layers_built(config)):
        for module in ("self_attn.qkv_proj", "self_attn.out_proj", "layer_norm1", "mlp.fc1", "mlp.fc2", "layer_norm2"):
            names |= {f"vision_tower.vision_model.encoder.layers.{i}.{module}.{w}" for w in ("weight", "bias")}
    projector_bias = config.get("multimodal_projector_bias", True)
    for k in (1, 2):
        names |= {f"multi_modal_projector.linear_{k}.weight"} | ({f"multi_modal_projector.linear_{k}.bias"} if projector_bias else set())
    names |= {"language_model.model.embed_tokens.weight", "language_model.model.norm.weight"}
    for i in range(text["num_hidden_layers"]):
        layer = f"language_model.model.layers.{i}."
        for module, with_bias in (("self_attn.qkv_proj", text.get("attention_bias")), ("self_attn.o_proj", text.get("attention_bias")),
                                  ("mlp.gate_up_proj", text.get("mlp_bias")), ("mlp.down_proj", text.get("mlp_bias"))):
            names |= {layer + module + ".weight"} | ({layer + module + ".bias"} if with_bias else set())
        names |= {layer + "input_layernorm.weight", layer + "post_attention_layernorm.weight"}
    if not config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)):
        names.add("language_model.lm_head.weight")
    return names


def vllm_load_target(name: str, config: dict) -> str | None:
    """The vLLM parameter a checkpoint weight ``name`` loads into (None: skipped), as the loader above does;
    AssertionError with vLLM's message when the loader would reject it."""
    for prefix, new in _VLLM_PREFIXES.items():
        if name.startswith(prefix):
            name = new + name[len(prefix):]
            break
    top, _, rest = name.partition(".")
    if top == "vision_tower":
        child, _, inner = rest.partition(".")
        assert child == "vision_model", f"There is no module or parameter named 'vision_tower.{child}'"
        if inner.startswith("post_layernorm"):
            return None
        if inner.startswith("encoder.layers.") and int(inner.split(".")[2]) >= _vision_layers_built(config):
            return None
        for shard in ("q_proj", "k_proj", "v_proj"):  # first match only, as vLLM's loop breaks
            if shard in inner:
                inner = inner.replace(shard, "qkv_proj")
                break
        return f"vision_tower.vision_model.{inner}"
    if top == "language_model":
        child, _, inner = rest.partition(".")
        if child == "lm_head":
            return None if config.get("tie_word_embeddings") else name
        assert child == "model", f"There is no module or parameter named 'language_model.{child}'"
        if "rotary_emb.inv_freq" in inner:
            return None
        for shard, packed in ((".q_proj", ".qkv_proj"), (".k_proj", ".qkv_proj"), (".v_proj", ".qkv_proj"),
                              (".gate_proj", ".gate_up_proj"), (".up_proj", ".gate_up_proj")):
            if shard in inner:
                inner = inner.replace(shard, packed)
                break
        return f"language_model.model.{inner}"
    assert top == "multi_modal_projector", f"There is no module or parameter named '{top}'"
    return name


def check_loads_in_vllm(folder: Path) -> None:
    """Every saved weight lands on a vLLM parameter, and every vLLM parameter gets one (vLLM refuses otherwise)."""
    from safetensors import safe_open

    config = json.loads((folder / "config.json").read_text())
    keys = []
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            keys += list(h.keys())
    expected = vllm_llava_parameters(config)
    loaded = {target for k in keys if (target := vllm_load_target(k, config)) is not None}
    assert loaded <= expected, sorted(loaded - expected)[:5]
    assert expected <= loaded, f"vLLM parameters no weight loads: {sorted(expected - loaded)[:5]}"


def check_adapter_loads_in_vllm_lora(adapter: Path) -> None:
    """vLLM's LoRA loader (vllm/lora/lora_model.py at 532cc258, vllm/lora/utils.py at 0fd15707:
    parse_fine_tuned_lora_name) accepts only lora_A/lora_B
    (and lora_embedding_*) tensors; it strips "base_model.model.", maps the rest with the model's hf_to_vllm_mapper
    and needs the module's last name among the model's LoRA-capable linear layers."""
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as h:
        keys = list(h.keys())
    assert keys
    for key in keys:
        parts = key.split(".")
        assert parts[-1] == "weight" and parts[-2] in ("lora_A", "lora_B"), f"{key} is unsupported LoRA weight"
        name = ".".join(parts[:-2]).removeprefix("base_model.model.")
        for prefix, new in _VLLM_PREFIXES.items():
            if name.startswith(prefix):
                name = new + name[len(prefix):]
                break
        assert name.startswith("language_model.model.layers."), name
        assert name.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), name
