"""MBConv with squeeze-excitation and 0/1 channel masks, and the derived (standalone) TF-NAS net.

One :class:`MBConv` serves the supernet (``bn="search"``: BatchNorm without affine parameters,
always batch statistics, as the code's ``affine=False, track_running_stats=False``; its mid width
is the op's maximum and a ``mask`` switches channels off) and the derived net (``bn="affine"``:
the library's BatchNorm with running statistics; exact mid width).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.models.layers import BN_EPSILON, batch_norm
from vision_jax.nas.space import parse_op, validate_arch

ACTS = {"relu": nn.relu, "swish": nn.swish}


def search_norm(x: jax.Array, eps: float = BN_EPSILON) -> jax.Array:
  """Affine-free BatchNorm with batch statistics over ``[B, H, W]`` (per channel).

  ``(x - mean) / sqrt(var + eps)``; an all-zero (masked) channel stays exactly zero, so a masked
  block equals the block built at the smaller width. Under ``jit`` with the batch sharded over
  ``data`` the statistics are global (sync-BN).
  """
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, axis=(0, 1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x32 - mean), axis=(0, 1, 2), keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class _Norm(nn.Module):
  mode: str  # "search" | "affine"

  @nn.compact
  def __call__(self, x, train: bool):
    if self.mode == "search":
      return search_norm(x)
    return batch_norm(train, jnp.float32)(x)


def _conv(features, kernel, stride=1, groups=1, bias=False, name=None):
  p = kernel // 2  # PyTorch's symmetric padding, not XLA's SAME
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(stride, stride),
    padding=((p, p), (p, p)),
    feature_group_count=groups,
    use_bias=bias,
    name=name,
  )


class DepthwiseConv(nn.Module):
  """Depthwise ``k x k`` conv (no bias), kernel ``[k, k, 1, C]`` as flax's grouped ``nn.Conv``.

  ``impl="taps"`` computes it as a sum of ``k^2`` strided slices of the padded input times a
  per-channel weight, ``y_{b,p,q,c} = sum_{ij} x^{pad}_{b, s p + i, s q + j, c} w_{ijc}``;
  ``impl="xla"`` uses ``lax.conv_general_dilated`` with ``feature_group_count = C``.

  Choice: training (supernet and retraining) uses ``"taps"``: XLA:CPU's grouped-convolution
  backward took 2.1 s vs 0.26 s for the taps (fwd + bwd, batch 32, 32x32, 64 channels, k5, stride
  2, loaded 2-core CPU). Latency tables and measured latencies use ``"xla"`` (what a deployed
  net runs); both give the same outputs for the same weights.
  """

  features: int
  kernel: int
  stride: int = 1
  impl: str = "taps"

  @nn.compact
  def __call__(self, x):
    k, s, c = self.kernel, self.stride, self.features
    w = self.param("kernel", nn.initializers.lecun_normal(), (k, k, 1, c), jnp.float32)
    p = k // 2
    if self.impl == "xla":
      return jax.lax.conv_general_dilated(
        x, w.astype(x.dtype), (s, s), ((p, p), (p, p)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c,
      )  # fmt: skip
    b, h, wd, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    out = None
    for i in range(k):
      for j in range(k):
        tap = jax.lax.slice(
          xp, (0, i, j, 0), (b, i + s * (ho - 1) + 1, j + s * (wo - 1) + 1, c), (1, s, s, 1)
        )
        term = tap * jnp.reshape(w[i, j, 0], (1, 1, 1, c)).astype(x.dtype)
        out = term if out is None else out + term
    return out


class MBConv(nn.Module):
  """Inverted residual: [1x1 expand, BN, act] -> kxk depthwise, BN, act -> [SE] -> 1x1 project, BN.

  .. math::
     h = m \\odot \\mathrm{act}(\\mathrm{BN}(W_e x)),\\quad
     g = m \\odot \\mathrm{act}(\\mathrm{BN}(\\mathrm{dw}_k(h))),\\quad
     g \\leftarrow g \\odot \\sigma(W_2\\,\\mathrm{act}(W_1 \\bar g + b_1) + b_2),\\quad
     y = \\mathrm{BN}(W_p g) \\;[+\\, x]

  with ``m`` the 0/1 channel mask (all ones when absent), ``\\bar g`` the spatial mean; the
  residual applies when ``c_in == c_out`` and ``stride == 1``.

  Attributes:
    cin, cout, mid: channels in / out / expanded.
    kernel: depthwise kernel (3 or 5).
    stride: depthwise stride.
    se: SE bottleneck width (0: no SE). The SE uses the block's activation then a sigmoid gate.
    act: ``"relu"`` or ``"swish"``.
    bn: ``"search"`` or ``"affine"``.
    expand: False for the second stem (no 1x1 expansion; ``mid == cin``).

  Input ``x: [B, H, W, cin]``, ``mask: [mid]`` or None; output ``[B, H', W', cout]``.
  """

  cin: int
  cout: int
  mid: int
  kernel: int
  stride: int
  se: int
  act: str
  bn: str = "search"
  expand: bool = True
  dw_impl: str = "taps"

  @nn.compact
  def __call__(self, x, mask=None, train: bool = True):
    act = ACTS[self.act]
    h = x
    if mask is not None:
      mask = jnp.reshape(mask, (1, 1, 1, -1)).astype(x.dtype)
    if self.expand:
      h = act(_Norm(self.bn, name="bn_expand")(_conv(self.mid, 1, name="expand")(h), train))
      if mask is not None:
        h = h * mask
    h = DepthwiseConv(self.mid, self.kernel, self.stride, self.dw_impl, name="dw")(h)
    h = act(_Norm(self.bn, name="bn_dw")(h, train))
    if mask is not None:
      h = h * mask
    if self.se:
      s = jnp.mean(h, axis=(1, 2), keepdims=True)
      s = act(_conv(self.se, 1, bias=True, name="se_reduce")(s))
      h = h * nn.sigmoid(_conv(self.mid, 1, bias=True, name="se_expand")(s))
    y = _Norm(self.bn, name="bn_project")(_conv(self.cout, 1, name="project")(h), train)
    if self.cin == self.cout and self.stride == 1:
      y = y + x
    return y


class Stem(nn.Module):
  """3x3 conv (BN, ReLU) then the second stem: MBConv without expansion, k3, SE, ReLU."""

  stem: int
  stride: int
  out: int
  se: int
  bn: str = "search"
  dw_impl: str = "taps"

  @nn.compact
  def __call__(self, x, train: bool = True):
    h = nn.relu(_Norm(self.bn, name="bn")(_conv(self.stem, 3, self.stride, name="conv")(x), train))
    return MBConv(
      self.stem, self.out, self.stem, 3, 1, self.se, "relu", self.bn, False, self.dw_impl,
      name="block",
    )(h, train=train)  # fmt: skip


class Head(nn.Module):
  """1x1 conv (BN, Swish) -> global average pool -> dropout -> FC; returns ``(logits, pooled)``."""

  head: int
  num_classes: int
  dropout: float = 0.0
  bn: str = "search"

  @nn.compact
  def __call__(self, x, train: bool = True):
    h = nn.swish(_Norm(self.bn, name="bn")(_conv(self.head, 1, name="conv")(x), train))
    pooled = jnp.mean(h, axis=(1, 2))
    h = nn.Dropout(self.dropout, deterministic=not train)(pooled) if self.dropout else pooled
    return nn.Dense(self.num_classes, name="fc")(h), pooled


def fast_init(module: nn.Module, rng, *args, **kwargs) -> dict[str, Any]:
  """``module.init(rng, *args, **kwargs)`` with every weight drawn from one random stream.

  The distributions are flax's defaults for these layers: each ``kernel`` (``nn.Conv``,
  ``nn.Dense``, :class:`DepthwiseConv`) is LeCun-normal, i.e. a normal truncated to ``[-2, 2]``
  times ``sqrt(1 / fan_in) / 0.8796`` with ``fan_in = prod(shape[:-1])``; every ``bias`` and
  BatchNorm ``mean`` is 0, every BatchNorm ``scale`` and ``var`` is 1. The shapes come from
  ``jax.eval_shape`` and all kernels from a single ``truncated_normal`` call, sliced.

  Choice: flax draws each parameter with its own folded-in key, one threefry per parameter;
  XLA:CPU compiled that init of a 2-block derived net in 10.2 CPU-s, the init of this function
  in 0.3 CPU-s (docs/tf_nas.md). The weights are other draws of the same distributions.

  Raises:
    ValueError: a parameter that is none of the above (its path is named).
  """
  if isinstance(rng, Mapping):
    rng = rng["params"]
  shapes = jax.eval_shape(lambda: nn.Module.init(module, jax.random.PRNGKey(0), *args, **kwargs))
  flat, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  names = [str(getattr(path[-1], "key", path[-1])) for path, _ in flat]
  total = sum(int(np.prod(leaf.shape)) for (_, leaf), n in zip(flat, names) if n == "kernel")
  z = jax.random.truncated_normal(rng, -2.0, 2.0, (max(total, 1),), jnp.float32)
  out, off = [], 0
  for (path, leaf), name in zip(flat, names):
    size = int(np.prod(leaf.shape))
    if name == "kernel":
      std = np.sqrt(1.0 / max(int(np.prod(leaf.shape[:-1])), 1)) / 0.87962566103423978
      out.append((z[off : off + size].reshape(leaf.shape) * std).astype(leaf.dtype))
      off += size
    elif name in ("scale", "var"):
      out.append(jnp.ones(leaf.shape, leaf.dtype))
    elif name in ("bias", "mean"):
      out.append(jnp.zeros(leaf.shape, leaf.dtype))
    else:
      raise ValueError(f"fast_init: no initialiser rule for variable {jax.tree_util.keystr(path)}")
  return jax.tree_util.tree_unflatten(treedef, out)


class DerivedNet(nn.Module):
  """The standalone net of a parsed architecture (affine BN, exact widths).

  Attributes:
    arch_json: ``json.dumps`` of a parsed architecture (:func:`~vision_jax.nas.validate_arch`);
      a string so the module stays hashable.
    dropout: dropout before the FC.

  ``apply(variables, x [B, H, W, C], train=...) -> (logits [B, classes], {"pooled": ...})``, the
  signature of :func:`~vision_jax.train.classification.classification_task`.
  """

  arch_json: str
  dropout: float = 0.0
  dw_impl: str = "xla"

  def init(self, rngs, *args, **kwargs):
    """:func:`fast_init` (flax's default distributions, one random stream); with flax's
    ``method`` / ``mutable`` / ``capture_intermediates`` arguments, ``nn.Module.init``."""
    if {"method", "mutable", "capture_intermediates"} & set(kwargs):
      return nn.Module.init(self, rngs, *args, **kwargs)
    return fast_init(self, rngs, *args, **kwargs)

  @nn.compact
  def __call__(self, x, train: bool = False):
    a = json.loads(self.arch_json)
    h = Stem(
      a["stem"], a["stem_stride"], a["stem_block"], a["stem_block_se"], "affine", self.dw_impl,
      name="stem",
    )(x, train)  # fmt: skip
    for i, b in enumerate(a["blocks"]):
      h = derived_block(b, dw_impl=self.dw_impl, name=f"block{i}")(h, train=train)
    logits, pooled = Head(a["head"], a["num_classes"], self.dropout, "affine", name="head")(
      h, train
    )
    return logits, {"pooled": pooled}


def derived_block(
  b: dict[str, Any], bn: str = "affine", dw_impl: str = "xla", name: str | None = None
) -> MBConv:
  """The :class:`MBConv` of one parsed block dict."""
  op = parse_op(b["op"])
  return MBConv(
    b["cin"], b["cout"], b["mid"], op.kernel, b["stride"], op.se_width(b["cin"]), b["act"], bn,
    True, dw_impl, name=name,
  )  # fmt: skip


def derived_net(arch: dict[str, Any], dropout: float = 0.0, dw_impl: str = "xla") -> DerivedNet:
  """Builds :class:`DerivedNet` from a parsed architecture (validated; errors name the key).

  ``dw_impl``: ``"xla"`` (inference, latency) or ``"taps"`` (training); see :class:`DepthwiseConv`.
  """
  if dw_impl not in ("xla", "taps"):
    raise ValueError(f"derived_net: dw_impl={dw_impl!r}; expected 'xla' or 'taps'")
  return DerivedNet(json.dumps(validate_arch(arch), sort_keys=True), dropout, dw_impl)
