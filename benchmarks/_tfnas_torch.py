"""PyTorch reference of the TF-NAS supernet search step, for ``benchmarks/bench_tfnas.py`` only.

The same net as :class:`vision_jax.nas.supernet.Supernet` over the same
:class:`~vision_jax.nas.SearchSpace` (NCHW instead of NHWC), and the search step of the official
code (AberHu/TF-NAS ``train_search.py``, ``train_w_arch``) on it:

1. weight update on the train batch: architecture parameters frozen (``requires_grad=False``),
   path 1 by Gumbel-max on ``log_softmax(log alpha)``, path 2 uniform over the other 7 ops, one
   backward of ``CE(path_1) + CE(path_2)``, gradient-norm clip 5 over the weights, SGD
   (momentum 0.9, weight decay 1e-5);
2. architecture update on the val batch: weights frozen, all 8 ops of every block mixed with
   ``gumbel_softmax(log alpha, tau)``, depth ``softmax(beta)``, loss
   ``CE + lambda |LAT / T - 1|`` with ``LAT`` the same table expectation as
   :func:`vision_jax.nas.supernet.expected_latency`, clip 5 over the architecture parameters,
   Adam (0.5, 0.999), lr 0.01, weight decay 5e-4;
3. ``log alpha <- log_softmax(log alpha)``.

Layers mirror :mod:`vision_jax.nas.layers`: search BatchNorm without affine parameters and with
batch statistics (``F.batch_norm(x, None, None, training=True)``), every op at its maximum mid
width times a 0/1 channel mask, PyTorch's symmetric ``k // 2`` padding, the SE after the
depthwise conv with the block's activation and a sigmoid gate.

The weight gradients are zeroed, not set to None, between steps (the code's PyTorch 1.1
``zero_grad``): once an op has been sampled, SGD applies weight decay and momentum to it on every
step, as optax does to every op on the JAX side.

Choice: the official code rebuilds each op at its current width every epoch instead of masking a
maximum-width op; the masked form is used here so that both sides run the same net (equal
parameter counts, ``load_flax_params`` gives equal outputs).

torch is not a dependency of vision_jax; only the benchmark and its test import this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vision_jax.nas.space import OPS, SearchSpace, parse_op

NUM_OPS = len(OPS)
BN_EPS = 1e-5
_ACTS = {"relu": F.relu, "swish": F.silu}


def search_norm(x: torch.Tensor) -> torch.Tensor:
  """Affine-free BatchNorm with batch statistics over ``[B, H, W]`` (``NCHW`` input)."""
  return F.batch_norm(x, None, None, training=True, momentum=0.0, eps=BN_EPS)


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, bias: bool = False):
  return nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=bias)


class MBConv(nn.Module):
  """[1x1 expand, BN, act, mask] -> kxk depthwise, BN, act, mask -> [SE] -> 1x1 project, BN
  [+ x]; input ``[B, cin, H, W]``, ``mask`` ``[mid]`` or None."""

  def __init__(self, cin, cout, mid, kernel, stride, se, act, expand=True):
    super().__init__()
    self.act = _ACTS[act]
    self.residual = cin == cout and stride == 1
    self.expand = _conv(cin, mid, 1) if expand else None
    self.dw = _conv(mid, mid, kernel, stride, groups=mid)
    self.se_reduce = _conv(mid, se, 1, bias=True) if se else None
    self.se_expand = _conv(se, mid, 1, bias=True) if se else None
    self.project = _conv(mid, cout, 1)

  def forward(self, x, mask=None):
    m = None if mask is None else mask.view(1, -1, 1, 1)
    h = x
    if self.expand is not None:
      h = self.act(search_norm(self.expand(h)))
      if m is not None:
        h = h * m
    h = self.act(search_norm(self.dw(h)))
    if m is not None:
      h = h * m
    if self.se_reduce is not None:
      s = self.act(self.se_reduce(h.mean((2, 3), keepdim=True)))
      h = h * torch.sigmoid(self.se_expand(s))
    y = search_norm(self.project(h))
    return y + x if self.residual else y


class Supernet(nn.Module):
  """Stem, the searchable blocks (8 masked MBConv ops each, sink-connecting stages), head.

  Parameters: the weights (:meth:`weight_parameters`) and the architecture parameters
  ``log_alpha`` ``[num_blocks, 8]`` (init ``log(1/8)``) and ``beta`` (one ``[D_s]`` zeros per
  stage). Buffers: the channel masks, the first ``e c_in`` channels of each op on.
  """

  def __init__(self, space: SearchSpace):
    super().__init__()
    sp = self.space = space
    self.slots = space.slots
    self.stem_conv = _conv(sp.in_channels, sp.stem, 3, sp.stem_stride)
    self.stem_block = MBConv(sp.stem, sp.stem_block, sp.stem, 3, 1, sp.stem_block_se, "relu", False)
    self.ops = nn.ModuleList()
    for slot in self.slots:
      row = nn.ModuleList()
      for o, name in enumerate(OPS):
        op = parse_op(name)
        mid = op.max_mid(slot.cin)
        row.append(
          MBConv(slot.cin, slot.cout, mid, op.kernel, slot.stride, op.se_width(slot.cin), slot.act)
        )
        mask = (torch.arange(mid) < op.nominal_mid(slot.cin)).float()
        self.register_buffer(f"mask_{slot.index}_{o}", mask)
      self.ops.append(row)
    self.head_conv = _conv(sp.stages[-1].channels, sp.head, 1)
    self.fc = nn.Linear(sp.head, sp.num_classes)
    self.log_alpha = nn.Parameter(torch.full((sp.num_blocks, NUM_OPS), -math.log(NUM_OPS)))
    self.beta = nn.ParameterList([nn.Parameter(torch.zeros(st.max_blocks)) for st in sp.stages])

  def mask(self, b: int, o: int) -> torch.Tensor:
    return getattr(self, f"mask_{b}_{o}")

  def arch_parameters(self) -> list[nn.Parameter]:
    return [self.log_alpha, *self.beta]

  def weight_parameters(self) -> list[nn.Parameter]:
    arch = {id(p) for p in self.arch_parameters()}
    return [p for p in self.parameters() if id(p) not in arch]

  def forward(self, x, op_index: Sequence[int] | None = None, op_weights=None):
    """``x`` ``[B, C, H, W]`` float; ``op_index``: one op per block (single path) or
    ``op_weights`` ``[num_blocks, 8]`` (mixture). Returns logits ``[B, num_classes]``."""
    if (op_index is None) == (op_weights is None):
      raise ValueError("Supernet: give exactly one of op_index= (single path) or op_weights= (mix)")
    h = self.stem_block(F.relu(search_norm(self.stem_conv(x))))
    for si, stage in enumerate(self.space.stages):
      outs = []
      for slot in (s for s in self.slots if s.stage == si):
        b, row = slot.index, self.ops[slot.index]
        if op_weights is None:
          o = int(op_index[b])
          h = row[o](h, self.mask(b, o))
        else:
          h = sum(op_weights[b, o] * row[o](h, self.mask(b, o)) for o in range(NUM_OPS))
        outs.append(h)
      w = torch.softmax(self.beta[si], -1)
      h = sum(w[d] * outs[d] for d in range(stage.max_blocks))
    h = F.silu(search_norm(self.head_conv(h)))
    return self.fc(h.mean((2, 3)))

  def expected_latency(self, op_w: torch.Tensor, lat: torch.Tensor, base: float) -> torch.Tensor:
    """``base + sum_s sum_d softmax(beta_s)_d sum_{b<=d} sum_o w_{b,o} L_{b,o}``."""
    per_block = (op_w * lat).sum(-1)
    total = torch.as_tensor(base, dtype=per_block.dtype)
    for si in range(len(self.space.stages)):
      idx = [s.index for s in self.slots if s.stage == si]
      total = total + (torch.softmax(self.beta[si], -1) * torch.cumsum(per_block[idx], 0)).sum()
    return total


def bi_sample(log_alpha: torch.Tensor, generator=None) -> tuple[list[int], list[int]]:
  """Path 1 by Gumbel-max on ``log_softmax(log alpha)``, path 2 uniform over the other 7 ops
  (``r ~ U{0..6}``, ``r + [r >= first]``), per block; host lists (the code's ``.item()``)."""
  u = torch.rand(log_alpha.shape, generator=generator).clamp_(1e-20, 1.0)
  first = torch.argmax(F.log_softmax(log_alpha, -1) - torch.log(-torch.log(u)), -1)
  r = torch.randint(0, NUM_OPS - 1, first.shape, generator=generator)
  second = r + (r >= first).long()
  return first.tolist(), second.tolist()


def preprocess(image: torch.Tensor) -> torch.Tensor:
  """uint8 ``[B, H, W, C]`` -> float ``[B, C, H, W]``, ``(x / 255 - 0.5) / 0.5`` (as
  :func:`vision_jax.data.transforms.image_to_float`)."""
  return (image.permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5


class SearchStep:
  """One TF-NAS search step (weight update then architecture update) on a :class:`Supernet`.

  Args:
    net: the supernet.
    lat: ``[num_blocks, 8]`` table latency at the current widths (ms).
    base_ms: latency of stem, second stem and head.
    target_ms: ``T``.
    tau: Gumbel temperature.
    lat_weight: ``lambda``.
  """

  def __init__(self, net: Supernet, lat, base_ms: float, target_ms: float, tau: float = 5.0,
               lat_weight: float = 0.1, seed: int = 0):  # fmt: skip
    self.net, self.base, self.target = net, float(base_ms), float(target_ms)
    self.tau, self.lat_weight = float(tau), float(lat_weight)
    self.lat = torch.as_tensor(np.array(lat), dtype=torch.float32)
    self.w_params, self.a_params = net.weight_parameters(), net.arch_parameters()
    self.opt_w = torch.optim.SGD(self.w_params, lr=0.025, momentum=0.9, weight_decay=1e-5)
    self.opt_a = torch.optim.Adam(self.a_params, lr=0.01, betas=(0.5, 0.999), weight_decay=5e-4)
    self.gen = torch.Generator().manual_seed(seed)

  def _freeze(self, weights: bool):
    for p in self.w_params:
      p.requires_grad_(not weights)
    for p in self.a_params:
      p.requires_grad_(weights)

  def __call__(self, batch: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    net = self.net
    # weight update: bi-sampled paths, architecture frozen
    self._freeze(weights=False)
    x, y = preprocess(batch["train"]["image"]), batch["train"]["label"]
    first, second = bi_sample(net.log_alpha.detach(), self.gen)
    loss_w = F.cross_entropy(net(x, op_index=first), y) + F.cross_entropy(
      net(x, op_index=second), y
    )
    self.opt_w.zero_grad(set_to_none=False)
    loss_w.backward()
    nn.utils.clip_grad_norm_(self.w_params, 5.0)
    self.opt_w.step()
    # architecture update: all ops, Gumbel-softmax mixture, weights frozen
    self._freeze(weights=True)
    x, y = preprocess(batch["val"]["image"]), batch["val"]["label"]
    g = -torch.log(-torch.log(torch.rand(net.log_alpha.shape, generator=self.gen).clamp_(1e-20)))
    w = torch.softmax((F.log_softmax(net.log_alpha, -1) + g) / self.tau, -1)
    ce = F.cross_entropy(net(x, op_weights=w), y)
    lat = net.expected_latency(w, self.lat, self.base)
    loss_a = ce + self.lat_weight * torch.abs(lat / self.target - 1.0)
    self.opt_a.zero_grad(set_to_none=True)
    loss_a.backward()
    nn.utils.clip_grad_norm_(self.a_params, 5.0)
    self.opt_a.step()
    with torch.no_grad():
      net.log_alpha.copy_(F.log_softmax(net.log_alpha, -1))
    return {"loss_w": loss_w.detach(), "loss_a": loss_a.detach(), "latency_ms": lat.detach()}


def count_parameters(net: Supernet) -> tuple[int, int]:
  """``(weights, architecture)`` parameter counts."""
  return (
    sum(p.numel() for p in net.weight_parameters()),
    sum(p.numel() for p in net.arch_parameters()),
  )


# ----------------------------------------------------------------------------- flax -> torch
def _kernel(k) -> torch.Tensor:
  """flax conv kernel ``[kh, kw, in, out]`` -> torch ``[out, in, kh, kw]``."""
  return torch.as_tensor(np.array(k)).permute(3, 2, 0, 1).contiguous()


def _load_mbconv(m: MBConv, p: Mapping[str, Any]):
  if m.expand is not None:
    m.expand.weight.copy_(_kernel(p["expand"]["kernel"]))
  m.dw.weight.copy_(_kernel(p["dw"]["kernel"]))
  if m.se_reduce is not None:
    for name in ("se_reduce", "se_expand"):
      getattr(m, name).weight.copy_(_kernel(p[name]["kernel"]))
      getattr(m, name).bias.copy_(torch.as_tensor(np.array(p[name]["bias"])))
  m.project.weight.copy_(_kernel(p["project"]["kernel"]))


@torch.no_grad()
def load_flax_params(net: Supernet, params: Mapping[str, Any], masks=None, arch=None):
  """Copies the flax :class:`~vision_jax.nas.supernet.Supernet` weights (``params["net"]``
  layout: ``stem``, ``ops_<b>_<o>``, ``head``) and optionally its masks
  (``{"b<i>": {op: [mid]}}``) and architecture parameters into ``net``."""
  net.stem_conv.weight.copy_(_kernel(params["stem"]["conv"]["kernel"]))
  _load_mbconv(net.stem_block, params["stem"]["block"])
  for slot in net.slots:
    for o, name in enumerate(OPS):
      _load_mbconv(net.ops[slot.index][o], params[f"ops_{slot.index}_{o}"])
      if masks is not None:
        net.mask(slot.index, o).copy_(torch.as_tensor(np.array(masks[f"b{slot.index}"][name])))
  net.head_conv.weight.copy_(_kernel(params["head"]["conv"]["kernel"]))
  net.fc.weight.copy_(torch.as_tensor(np.array(params["head"]["fc"]["kernel"])).T)
  net.fc.bias.copy_(torch.as_tensor(np.array(params["head"]["fc"]["bias"])))
  if arch is not None:
    net.log_alpha.copy_(torch.as_tensor(np.array(arch["alpha"])))
    for i, b in enumerate(net.beta):
      b.copy_(torch.as_tensor(np.array(arch["beta"][f"s{i}"])))
