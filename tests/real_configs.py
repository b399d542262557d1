"""Real model dimensions, written out by hand (no downloads): the cost tests' configs."""

OPT_6_7B = {
    "model_type": "opt",
    "hidden_size": 4096,
    "ffn_dim": 16384,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "vocab_size": 50272,
    "max_position_embeddings": 2048,
    "word_embed_proj_dim": 4096,
    "do_layer_norm_before": True,
}
OPT_2_7B = {**OPT_6_7B, "hidden_size": 2560, "ffn_dim": 10240, "word_embed_proj_dim": 2560}
OPT_350M = {
    **OPT_6_7B,
    "hidden_size": 1024,
    "ffn_dim": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "word_embed_proj_dim": 512,
    "do_layer_norm_before": False,
}
LLAMA_7B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
    "tie_word_embeddings": False,
}
FLAN_T5_XL = {
    "model_type": "t5",
    "d_model": 2048,
    "d_kv": 64,
    "d_ff": 5120,
    "num_layers": 24,
    "num_decoder_layers": 24,
    "num_heads": 32,
    "vocab_size": 32128,
    "feed_forward_proj": "gated-gelu",
    "tie_word_embeddings": False,
}
FLAN_T5_XXL = {**FLAN_T5_XL, "d_model": 4096, "d_ff": 10240, "num_heads": 64}
EVA_VIT_G = {
    "hidden_size": 1408,
    "intermediate_size": 6144,
    "num_hidden_layers": 39,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "qkv_bias": True,
}
QFORMER = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "cross_attention_frequency": 2,
    "encoder_hidden_size": 1408,
}
BLIP2_OPT_2_7B = {
    "model_type": "blip-2",
    "num_query_tokens": 32,
    "vision_config": EVA_VIT_G,
    "qformer_config": QFORMER,
    "text_config": OPT_2_7B,
}
