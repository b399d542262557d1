"""LAVIS / VPGTrans checkpoints in and out: a round trip is bit-exact, a file built the way LAVIS stores
it (independently of vpgtrans' mapping) gives the same logits, and every key is accounted for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from vpgtrans.cli.main import main
from vpgtrans.convert import load_lavis
from vpgtrans.convert_config import LavisSource
from vpgtrans.errors import VPGTransError
from vpgtrans.method.graft import load_blip2
from vpgtrans.pipeline import initialise, save_model

HEADS = ["--vit-heads", "4", "--qformer-heads", "4"]  # the tiny zoo's; real BLIP-2: 16 and 12 (the defaults)


@pytest.fixture(scope="module")
def grafted(zoo, tmp_path_factory) -> tuple[Path, Path]:
    """A grafted model folder, and its language model (with `<image>`) as a folder of its own."""
    root = tmp_path_factory.mktemp("lavis")
    model, processor, _ = initialise(str(zoo.src), str(zoo.dst_llama), None)
    save_model(model, processor, root / "model")
    model.language_model.save_pretrained(root / "llm")
    processor.tokenizer.save_pretrained(root / "llm")
    return root / "model", root / "llm"


def lavis_by_hand(model, prefix: str) -> tuple[dict, dict]:
    """A stage-2 checkpoint and a ViT file laid out as LAVIS writes them, spelled out key by key from
    the LAVIS module names (not through vpgtrans' rename rules)."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    vit = {
        "cls_token": sd["vision_model.embeddings.class_embedding"],
        "pos_embed": sd["vision_model.embeddings.position_embedding"],
        "patch_embed.proj.weight": sd["vision_model.embeddings.patch_embedding.weight"],
        "patch_embed.proj.bias": sd["vision_model.embeddings.patch_embedding.bias"],
        "norm.weight": torch.ones(3), "head.weight": torch.zeros(2, 3),  # EVA's classifier: unused by BLIP-2
    }  # fmt: skip
    for i in range(model.config.vision_config.num_hidden_layers):
        hf, block = f"vision_model.encoder.layers.{i}.", f"blocks.{i}."
        q, _, v = sd[hf + "self_attn.qkv.bias"].chunk(3)
        vit |= {
            block + "norm1.weight": sd[hf + "layer_norm1.weight"], block + "norm1.bias": sd[hf + "layer_norm1.bias"],
            block + "norm2.weight": sd[hf + "layer_norm2.weight"], block + "norm2.bias": sd[hf + "layer_norm2.bias"],
            block + "attn.qkv.weight": sd[hf + "self_attn.qkv.weight"], block + "attn.q_bias": q,
            block + "attn.v_bias": v,
            block + "attn.proj.weight": sd[hf + "self_attn.projection.weight"],
            block + "attn.proj.bias": sd[hf + "self_attn.projection.bias"],
        }  # fmt: skip
        for fc in ("fc1", "fc2"):
            for p in ("weight", "bias"):
                vit[block + f"mlp.{fc}.{p}"] = sd[hf + f"mlp.{fc}.{p}"]
    stage2 = {
        "query_tokens": sd["query_tokens"],
        "ln_vision.weight": sd["vision_model.post_layernorm.weight"],
        "ln_vision.bias": sd["vision_model.post_layernorm.bias"],
        "Qformer.bert.embeddings.LayerNorm.weight": sd["qformer.layernorm.weight"],
        "Qformer.bert.embeddings.LayerNorm.bias": sd["qformer.layernorm.bias"],
        "Qformer.bert.embeddings.position_ids": torch.arange(512)[None],
        f"{prefix}_proj.weight": sd["language_projection.weight"],
        f"{prefix}_proj.bias": sd["language_projection.bias"],
        "Qformer.cls.predictions.bias": torch.zeros(5),  # stage-1 heads LAVIS may keep: dropped
        "temp": torch.tensor(0.07),
    }
    for i in range(model.config.qformer_config.num_hidden_layers):
        hf, lavis = f"qformer.encoder.layer.{i}.", f"Qformer.bert.encoder.layer.{i}."
        for key in [k for k in sd if k.startswith(hf)]:
            rest = key[len(hf) :]
            for side in ("attention", "crossattention"):
                rest = rest.replace(f"{side}.attention.", f"{side}.self.")
            stage2[lavis + rest] = sd[key]
    return stage2, vit


def _lavis_files(zoo, folder: Path):
    """The source BLIP-2, laid out by hand as LAVIS' three files in `folder`; (the source, its LLM folder)."""
    source, _ = load_blip2(str(zoo.src))
    stage2, vit = lavis_by_hand(source, "opt")
    torch.save({"model": stage2}, folder / "blip2_opt.pth")
    torch.save(vit, folder / "eva_vit.pth")
    source.language_model.save_pretrained(folder / "opt")
    AutoTokenizer.from_pretrained(zoo.src).save_pretrained(folder / "opt")
    return source, folder / "opt"


def _logits(model, zoo) -> torch.Tensor:
    from vpgtrans.training.data import CaptionDataset, load_caption_data
    from vpgtrans.training.run import collator_for
    from vpgtrans.training.stages import TrainingConfig

    _, processor = load_blip2(str(zoo.src))
    data = load_caption_data(zoo.data)
    batch = collator_for(processor, model, TrainingConfig())([CaptionDataset(data.records)[i] for i in range(4)])
    with torch.no_grad():
        return model.eval()(**batch).logits


def test_a_file_laid_out_as_lavis_stores_it_gives_the_same_logits(zoo, tmp_path):
    source, llm = _lavis_files(zoo, tmp_path)
    lavis = LavisSource(checkpoint=str(tmp_path / "blip2_opt.pth"), llm=str(llm), vit=str(tmp_path / "eva_vit.pth"),
                        vit_heads=4, qformer_heads=4)  # fmt: skip
    converted, _ = load_lavis(lavis)
    assert torch.allclose(_logits(converted, zoo), _logits(source, zoo), atol=1e-5)


def test_round_trip_through_lavis_is_bit_exact(grafted, tmp_path, capsys):
    model, llm = grafted
    ckpt, vit = tmp_path / "ckpt.pth", tmp_path / "vit.pth"
    assert main(["convert", str(model), "--to", "lavis", "--out", str(ckpt), "--vit-out", str(vit)]) == 0
    assert "llama_proj" in capsys.readouterr().out  # the prefix follows the LLM family
    saved = torch.load(ckpt, weights_only=True)["model"]
    assert {"query_tokens", "llama_proj.weight", "ln_vision.weight", "Qformer.bert.embeddings.position_ids"} <= set(
        saved
    ) and not any(k.startswith(("visual_encoder", "llama_model")) for k in saved)  # fmt: skip
    back = tmp_path / "back"
    args = ["convert", str(ckpt), "--from", "lavis", "--vit", str(vit), "--llm", str(llm), "--out", str(back)]
    assert main([*args, *HEADS]) == 0
    original, again = load_file(model / "model.safetensors"), load_file(back / "model.safetensors")
    assert set(original) == set(again) and all(torch.equal(original[k], again[k]) for k in original)
    assert json.loads((back / "config.json").read_text())["num_query_tokens"] == 4


def test_every_key_is_accounted_for(grafted, tmp_path, capsys):
    model, llm = grafted
    ckpt = tmp_path / "ckpt.pth"
    assert main(["convert", str(model), "--to", "lavis", "--out", str(ckpt), "--vit-out", str(tmp_path / "v.pth")]) == 0
    state = torch.load(ckpt, weights_only=True)["model"]
    args = [
        "--from",
        "lavis",
        "--vit",
        str(tmp_path / "v.pth"),
        "--llm",
        str(llm),
        "--out",
        str(tmp_path / "o"),
        *HEADS,
    ]

    torch.save({"model": {**state, "llama_proj.extra": torch.zeros(1)}}, tmp_path / "bad.pth")
    assert main(["convert", str(tmp_path / "bad.pth"), *args]) == 2
    assert "keys with no place in BLIP-2: ['llama_proj.extra']" in capsys.readouterr().err
    torch.save({"model": {k: v for k, v in state.items() if k != "query_tokens"}}, tmp_path / "less.pth")
    assert main(["convert", str(tmp_path / "less.pth"), *args]) == 2
    assert "no query_tokens after conversion" in capsys.readouterr().err
    torch.save({"model": state, "config": {"run": object}}, tmp_path / "pickled.pth")  # a class, as LAVIS pickles
    assert main(["convert", str(tmp_path / "pickled.pth"), *args]) == 2
    assert "pass --trust-pickle" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "pickled.pth"), *args, "--trust-pickle"]) == 0
    assert (tmp_path / "o" / "model.safetensors").exists()


def test_one_direction_and_the_llm_are_required(grafted, tmp_path, capsys):
    model, _ = grafted
    assert main(["convert", str(model), "--out", str(tmp_path / "x")]) == 2
    assert "give one of --from lavis" in capsys.readouterr().err
    assert main(["convert", "x.pth", "--from", "lavis", "--out", str(tmp_path / "x")]) == 2
    assert "--from lavis needs --llm" in capsys.readouterr().err


def test_vpg_config_comes_from_the_shapes(zoo):
    from vpgtrans.io.lavis import vpg_config_from_shapes

    source, _ = load_blip2(str(zoo.src))
    shapes = vpg_config_from_shapes(source.state_dict(), 4, 4, "x")
    vision, qformer = source.config.vision_config, source.config.qformer_config
    assert shapes["vision_config"]["image_size"] == vision.image_size
    assert shapes["vision_config"]["num_hidden_layers"] == vision.num_hidden_layers
    assert shapes["qformer_config"]["cross_attention_frequency"] == qformer.cross_attention_frequency
    assert shapes["qformer_config"]["encoder_hidden_size"] == qformer.encoder_hidden_size
    with pytest.raises(VPGTransError, match="no vision_model.embeddings.class_embedding"):
        vpg_config_from_shapes({"query_tokens": source.query_tokens}, 4, 4, "x")


def test_a_lavis_checkpoint_is_a_source(zoo, tmp_path, capsys):
    source, llm = _lavis_files(zoo, tmp_path)
    args = ["transfer", "--src", str(tmp_path / "blip2_opt.pth"), "--dst", str(zoo.dst_llama), "--data", str(zoo.data)]
    steps = ["--stage1-steps", "1", "--stage2-steps", "1", "--batch-size", "8", "--out", str(tmp_path / "run")]
    assert main([*args, *steps]) == 2
    assert "give --src-llm" in capsys.readouterr().err and not (tmp_path / "run").exists()
    lavis = ["--src-llm", str(llm), "--src-vit", str(tmp_path / "eva_vit.pth"), "--src-vit-heads", "4",
             "--src-qformer-heads", "4"]  # fmt: skip
    assert main([*args, *steps, *lavis]) == 0
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "done" and str(llm) in record["converter"]["src_table"]
    transferred = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert torch.equal(transferred["vision_model.embeddings.class_embedding"],
                       source.vision_model.embeddings.class_embedding)  # fmt: skip
