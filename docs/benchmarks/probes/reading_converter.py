"""Exploratory probe (not part of the library): a converter fitted by what the destination reads.

    python docs/benchmarks/probes/reading_converter.py SRC DST OUT STEPS LR

Starting from the ridge converter, g is trained (AdamW, batch 64, the destination frozen) so
that the destination, given g applied to the source's input embeddings of a training caption
in the soft prompt's place, generates that caption after BOS in its own tokens: the layout of
a captioning batch with converted source text instead of the image. OUT is a converter file
for `CONV_FILE=OUT stage_probe.py DST vpgtrans ...`. Run from the repository root after
`vpgtrans world` has written runs/world-n2000-seed21.
"""

import sys
import time

import torch

from vpgtrans.converter import ConverterFitConfig, WordConverter, fit_converter, load_tokenizer
from vpgtrans.data import load_caption_data
from vpgtrans.embeddings import read_input_embeddings
from vpgtrans.graft import load_causal_lm

src, dst, out, steps, lr = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
batch = 64
captions = load_caption_data("runs/world-n2000-seed21/captions.jsonl").captions()
lm, dst_tok = load_causal_lm(dst)
lm.requires_grad_(False)
src_table = read_input_embeddings(src).weight.float()
dst_table = lm.get_input_embeddings()
ridge = fit_converter(src, dst, captions, ConverterFitConfig())
layer = torch.nn.Linear(src_table.shape[1], dst_table.weight.shape[1])
with torch.no_grad():
    layer.weight.copy_(ridge.weight)
    layer.bias.copy_(ridge.bias)
src_ids = load_tokenizer(src)(captions, add_special_tokens=False)["input_ids"]
dst_ids = [ids + [dst_tok.eos_token_id] for ids in dst_tok(captions)["input_ids"]]
optimizer = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=0.0)
generator = torch.Generator().manual_seed(0)
started = time.time()
for step in range(steps):
    rows = torch.randint(len(captions), (batch,), generator=generator).tolist()
    prefixes = [layer(src_table[torch.tensor(src_ids[r])]) for r in rows]
    length = max(len(p) + len(dst_ids[r]) for p, r in zip(prefixes, rows))
    embeds = torch.zeros(batch, length, dst_table.weight.shape[1])
    mask = torch.zeros(batch, length, dtype=torch.long)
    labels = torch.full((batch, length), -100)
    for i, (prefix, r) in enumerate(zip(prefixes, rows)):
        text = torch.tensor(dst_ids[r])
        n, m = len(prefix), len(text)
        embeds[i, :n], embeds[i, n : n + m] = prefix, dst_table(text)
        mask[i, : n + m] = 1
        labels[i, n : n + m] = text
    loss = lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 50 == 0 or step == steps - 1:
        print(f"step {step}: caption loss {loss.item():.3f} ({time.time() - started:.0f} s)", flush=True)
WordConverter(weight=layer.weight.detach().clone(), bias=layer.bias.detach().clone()).save(out)
