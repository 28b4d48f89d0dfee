#!/usr/bin/env python3
"""Reference SFT (masked) and DPO losses and gradients for a tiny GPT-2, computed in PyTorch.

Writes Tests/TrainingTests/Fixtures/finetune_tiny.safetensors with:
  * policy parameters (HF names, prefix "transformer.") and a perturbed reference model ("ref.transformer."),
  * 3 preference pairs as token rows: chosen / rejected (3, 16) and their reply masks,
  * sft_loss: mean cross-entropy over the masked (reply) target tokens of the chosen rows, and its
    gradients (grad.sft.<name>),
  * dpo_loss for beta = 0.5 with reply log-probabilities summed over the reply tokens, the policy and
    reference log-probabilities, and the DPO gradients (grad.dpo.<name>),
  * rpo_loss: the DPO loss plus ALPHA times the chosen replies' negative log-likelihood per reply
    token (averaged over the pairs), and its gradients (grad.rpo.<name>).
  * cdpo_loss (label smoothing EPSILON), ipo_loss and hinge_loss with their derivatives with respect
    to the summed reply log-probabilities (<kind>_dchosen, <kind>_drejected), and the label-smoothed
    loss's gradient of one weight matrix (grad.cdpo.<name>).

Float64 math, float32 storage. Deterministic (seed 4242). Needs torch, transformers, safetensors.

    python3 Tools/reference/finetune_fixture.py
"""
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

torch.manual_seed(4242)
CONFIG = dict(vocab_size=97, n_positions=16, n_embd=64, n_layer=2, n_head=4, activation_function="gelu_new",
              resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True)
P, L = 3, 17  # pairs, tokens per row (inputs are the first 16, targets the last 16)
BETA = 0.5
ALPHA = 0.7
OUT = Path(__file__).resolve().parents[2] / "Tests" / "TrainingTests" / "Fixtures" / "finetune_tiny.safetensors"


def model(noise):
    m = GPT2LMHeadModel(GPT2Config(**CONFIG)).double().eval()
    with torch.no_grad():
        for _, p in m.named_parameters():
            p.add_(torch.randn_like(p) * noise)
    return m


policy = model(0.05)
reference = model(0.05)
chosen = torch.randint(0, 97, (P, L))
rejected = chosen.clone()
starts = [6, 9, 12]  # the reply starts here: prompt tokens are shared
for i, s in enumerate(starts):
    rejected[i, s:] = torch.randint(0, 97, (L - s,))
mask = torch.zeros(P, L - 1, dtype=torch.float64)  # mask over targets: target j is token j+1
for i, s in enumerate(starts):
    mask[i, s - 1:] = 1


def token_logps(m, rows):
    logits = m(rows[:, :-1]).logits
    return -F.cross_entropy(logits.reshape(-1, 97), rows[:, 1:].reshape(-1), reduction="none").view(rows.shape[0], -1)


tensors = {}
params = dict(policy.named_parameters())
# SFT: masked mean over the chosen rows' reply tokens.
policy.zero_grad()
sft = -(token_logps(policy, chosen) * mask).sum() / mask.sum()
sft.backward()
for n, p in params.items():
    tensors["grad.sft." + n] = p.grad.detach().float().contiguous()
tensors["sft_loss"] = sft.detach().float().reshape(1)
# DPO.
policy.zero_grad()
pc = (token_logps(policy, chosen) * mask).sum(1)
pr = (token_logps(policy, rejected) * mask).sum(1)
with torch.no_grad():
    rc = (token_logps(reference, chosen) * mask).sum(1)
    rr = (token_logps(reference, rejected) * mask).sum(1)
z = BETA * ((pc - rc) - (pr - rr))
dpo = -F.logsigmoid(z).mean()
dpo.backward()
for n, p in params.items():
    tensors["grad.dpo." + n] = p.grad.detach().float().contiguous()
    tensors[n] = p.detach().float().contiguous()
# DPO + NLL of the chosen replies (RPO).
policy.zero_grad()
pc = (token_logps(policy, chosen) * mask).sum(1)
pr = (token_logps(policy, rejected) * mask).sum(1)
z = BETA * ((pc - rc) - (pr - rr))
rpo = -F.logsigmoid(z).mean() + ALPHA * (-pc / mask.sum(1)).mean()
rpo.backward()
for n, p in params.items():
    tensors["grad.rpo." + n] = p.grad.detach().float().contiguous()
# The other preference losses on the same pairs, as functions of the summed reply log-probabilities:
# h = (pc - rc) - (pr - rr). Their gradients through the model differ from DPO's only by the per-pair
# slope dL/dh, so the fixture keeps the loss, dL/dpc and dL/dpr (a few numbers each) and the full
# gradient of one weight matrix for label-smoothed DPO.
EPSILON = 0.2
GRAD_PARAM = "transformer.h.1.mlp.c_proj.weight"
for kind in ("cdpo", "ipo", "hinge"):
    policy.zero_grad()
    pc = (token_logps(policy, chosen) * mask).sum(1)
    pr = (token_logps(policy, rejected) * mask).sum(1)
    pc.retain_grad()
    pr.retain_grad()
    h = (pc - rc) - (pr - rr)
    if kind == "cdpo":
        loss = (-(1 - EPSILON) * F.logsigmoid(BETA * h) - EPSILON * F.logsigmoid(-BETA * h)).mean()
    elif kind == "ipo":
        loss = ((h - 1 / (2 * BETA)) ** 2).mean()
    else:
        loss = torch.relu(1 - BETA * h).mean()
    loss.backward()
    tensors[f"{kind}_loss"] = loss.detach().float().reshape(1)
    tensors[f"{kind}_dchosen"] = pc.grad.detach().float()
    tensors[f"{kind}_drejected"] = pr.grad.detach().float()
    if kind == "cdpo":
        tensors["grad.cdpo." + GRAD_PARAM] = params[GRAD_PARAM].grad.detach().float().contiguous()
tensors["label_smoothing"] = torch.tensor([EPSILON], dtype=torch.float32)
for n, p in reference.named_parameters():
    tensors["ref." + n] = p.detach().float().contiguous()
tensors.update({
    "dpo_loss": dpo.detach().float().reshape(1), "beta": torch.tensor([BETA], dtype=torch.float32),
    "rpo_loss": rpo.detach().float().reshape(1), "alpha": torch.tensor([ALPHA], dtype=torch.float32),
    "policy_chosen_logps": pc.detach().float(), "policy_rejected_logps": pr.detach().float(),
    "reference_chosen_logps": rc.float(), "reference_rejected_logps": rr.float(),
    "chosen": chosen.int(), "rejected": rejected.int(), "reply_start": torch.tensor(starts, dtype=torch.int32),
})
# The lm_head shares storage with wte; keep only the transformer's copy.
tensors = {k: v for k, v in tensors.items() if "lm_head" not in k}
OUT.parent.mkdir(parents=True, exist_ok=True)
save_file(tensors, str(OUT))
print(f"wrote {OUT}: sft_loss {sft.item():.6f}, dpo_loss {dpo.item():.6f}, rpo_loss {rpo.item():.6f}, "
      f"cdpo/ipo/hinge {tensors['cdpo_loss'].item():.6f} / {tensors['ipo_loss'].item():.6f} / {tensors['hinge_loss'].item():.6f}")
