"""2-D convolution with an optional per-tap GEMM backward pass; the `Conv` module of all models.

The weight gradient of a convolution is a convolution of the input with the output gradient,
contracting over batch and space, which XLA:CPU may lower to a slow generic loop (the foundation
issue reported ~3 GFLOP/s vs ~54 forward on its machine). It is also a sum of ``k_h * k_w`` plain
matrix products, one per kernel tap:

.. math::

  \\frac{\\partial L}{\\partial W_{ij}} = \\sum_{b, p, q} X^{pad}_{b,\\, s_h p + i,\\, s_w q + j}
  {}^{\\top} G_{b, p, q}\\qquad W_{ij} \\in \\mathbb{R}^{C_{in} \\times C_{out}},

with ``X^{pad}`` the padded input ``[B, H', W', C_in]`` and ``G`` the output gradient
``[B, P, Q, C_out]``. Each tap is a strided slice of the padded input followed by one GEMM, which
XLA:CPU runs through its fast dot path. `conv2d` implements that as a `jax.custom_vjp`; the input
gradient can use the stock transposed convolution (``dx_impl="xla"``) or the same per-tap
decomposition (``dx_impl="einsum"``: ``dX^{pad}`` is the sum over taps of ``G W_{ij}^T`` scattered
back with stride ``s``).

Measured here (jax 0.10.2, 2-core CPU) stock XLA's weight gradient was *not* slow (17-120 GFLOP/s
per layer), so the per-tap backward only wins for strided convolutions; ``conv_impl="auto"`` uses
it there (on CPU) and nowhere else. Numbers: docs/models.md, benchmarks/bench_train_step.py.

Layout: inputs NHWC, kernels HWIO (flax's layout), feature groups and dilation are not supported.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")
CONV_IMPLS = ("xla", "einsum", "auto")
DX_IMPLS = ("xla", "einsum")

# Where `auto` picks the einsum backward: on CPU, for strided convolutions only. Measured on the
# 2-core dev CPU (jax 0.10.2; CPU time per weight gradient, batch 64): stride 2 wins (3x3
# 64->128 at 32x32: 65 vs 82 ms; 3x3 128->256 at 16x16: 68 vs 102 ms; 1x1 64->128: 10 vs 25 ms),
# stride 1 loses at every width tried (3x3 64->64 at 32x32: 316 vs 184 ms; 32->32 at 28x28:
# 283 vs 51 ms). See docs/models.md for the full-step numbers.
AUTO_MIN_STRIDE = 2

Padding = str | Sequence[tuple[int, int]]


def _explicit_padding(
  in_hw: Sequence[int], kernel_hw: Sequence[int], strides: Sequence[int], padding: Padding
) -> tuple[tuple[int, int], ...]:
  """Resolves 'SAME' / 'VALID' / explicit pairs into ((lo, hi), (lo, hi)) like lax does."""
  if isinstance(padding, str):
    if padding.upper() not in ("SAME", "VALID"):
      raise ValueError(f"padding must be 'SAME', 'VALID' or ((lo, hi), (lo, hi)); got {padding!r}")
    pads = lax.padtype_to_pads(tuple(in_hw), tuple(kernel_hw), tuple(strides), padding.upper())
  else:
    pads = [tuple(int(v) for v in p) for p in padding]
    if len(pads) != 2 or any(len(p) != 2 for p in pads):
      raise ValueError(f"explicit padding must be two (lo, hi) pairs; got {padding!r}")
  return tuple((int(lo), int(hi)) for lo, hi in pads)


def _stock_conv(x, w, strides, pads):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DN)


def _tap_slice(xp, i, j, out_hw, strides):
  """Input rows/cols that kernel tap (i, j) meets: xp[:, i::s_h, j::s_w, :] cropped to out_hw."""
  (oh, ow), (sh, sw) = out_hw, strides
  b, _, _, c = xp.shape
  return lax.slice(
    xp, (0, i, j, 0), (b, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, c), (1, sh, sw, 1)
  )


def _weight_grad(x, g, kernel_shape, strides, pads):
  """dL/dW as one GEMM per tap over strided slices of the padded input. Returns float32 HWIO."""
  kh, kw, _, _ = kernel_shape
  # Negative (cropping) pads are legal in lax; lax.pad handles both signs.
  xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
  out_hw = g.shape[1:3]
  taps = [
    jnp.einsum(
      "bhwc,bhwo->co",
      _tap_slice(xp, i, j, out_hw, strides),
      g,
      preferred_element_type=jnp.float32,
    )
    for i in range(kh)
    for j in range(kw)
  ]
  return jnp.stack(taps).reshape(kernel_shape)


def _input_grad_einsum(g, w, in_shape, strides, pads):
  """dL/dX by scattering G W_ij^T back to each tap's strided positions (float32)."""
  kh, kw, _, _ = w.shape
  b, h, wd, c = in_shape
  (sh, sw), (oh, ow) = strides, g.shape[1:3]
  hp, wp = h + pads[0][0] + pads[0][1], wd + pads[1][0] + pads[1][1]
  # One GEMM for all taps: [B, P, Q, C_out] x [C_out, kh*kw*C_in].
  cols = jnp.einsum("bpqo,ijco->bpqijc", g, w, preferred_element_type=jnp.float32)
  dxp = jnp.zeros((b, hp, wp, c), jnp.float32)
  for i in range(kh):
    for j in range(kw):
      # Interior padding puts tap (i, j)'s contributions at rows i + s_h * p, cols j + s_w * q.
      hi_h = hp - (i + (oh - 1) * sh + 1)
      hi_w = wp - (j + (ow - 1) * sw + 1)
      dxp = dxp + lax.pad(
        cols[:, :, :, i, j, :],
        jnp.zeros((), jnp.float32),
        ((0, 0, 0), (i, hi_h, sh - 1), (j, hi_w, sw - 1), (0, 0, 0)),
      )
  # Undo the padding (negative padding crops).
  return lax.pad(
    dxp,
    jnp.zeros((), jnp.float32),
    ((0, 0, 0), (-pads[0][0], -pads[0][1], 0), (-pads[1][0], -pads[1][1], 0), (0, 0, 0)),
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_einsum_bwd(x, w, strides, pads, dx_impl):
  return _stock_conv(x, w, strides, pads)


def _fwd(x, w, strides, pads, dx_impl):
  return _stock_conv(x, w, strides, pads), (x, w)


def _bwd(strides, pads, dx_impl, res, g):
  x, w = res
  dw = _weight_grad(x, g, w.shape, strides, pads).astype(w.dtype)
  if dx_impl == "einsum":
    dx = _input_grad_einsum(g, w, x.shape, strides, pads).astype(x.dtype)
  else:
    _, vjp_x = jax.vjp(lambda x_: _stock_conv(x_, w, strides, pads), x)
    (dx,) = vjp_x(g)
  return dx, dw


_conv_einsum_bwd.defvjp(_fwd, _bwd)


def conv2d(
  x: jax.Array,
  w: jax.Array,
  strides: Sequence[int] = (1, 1),
  padding: Padding = "SAME",
  *,
  impl: str = "xla",
  dx_impl: str = "xla",
) -> jax.Array:
  """2-D convolution (cross-correlation) with a selectable backward implementation.

  .. math::

    Y_{b,p,q,o} = \\sum_{i,j,c} X^{pad}_{b,\\, s_h p + i,\\, s_w q + j,\\, c}\\, W_{i,j,c,o}

  The forward pass is always ``lax.conv_general_dilated``; ``impl`` only changes how the
  gradients are computed, so values are identical and gradients agree to float rounding.

  Args:
    x: input ``[batch, height, width, in_channels]``.
    w: kernel ``[k_h, k_w, in_channels, out_channels]``.
    strides: ``(s_h, s_w)``.
    padding: ``"SAME"``, ``"VALID"`` or explicit ``((lo_h, hi_h), (lo_w, hi_w))``.
    impl: ``"xla"`` (stock autodiff), ``"einsum"`` (per-tap GEMM weight gradient) or ``"auto"``
      (``"einsum"`` on CPU for strided convolutions, else ``"xla"``).
    dx_impl: input gradient under ``"einsum"``: ``"xla"`` (stock transposed convolution) or
      ``"einsum"`` (per-tap scatter).

  Returns:
    ``[batch, out_height, out_width, out_channels]`` in the promoted dtype of ``x`` and ``w``.

  Raises:
    ValueError: on wrong ranks, mismatched channels, or unknown ``impl`` / ``padding``.

  Choice: the forward pass stays stock (it is fast on XLA:CPU); only the backward pass can be
    rewritten, because that is where XLA:CPU can be slow (see the module docstring).
  """
  if x.ndim != 4 or w.ndim != 4:
    raise ValueError(f"conv2d expects x [B,H,W,C] and w [kh,kw,Cin,Cout]; got {x.shape}, {w.shape}")
  if x.shape[-1] != w.shape[2]:
    raise ValueError(
      f"conv2d: x has {x.shape[-1]} channels but w expects {w.shape[2]} (w.shape={w.shape})"
    )
  if dx_impl not in DX_IMPLS:
    raise ValueError(f"dx_impl must be one of {DX_IMPLS}; got {dx_impl!r}")
  strides = tuple(int(s) for s in strides)
  impl = resolve_conv_impl(impl, strides=strides)
  pads = _explicit_padding(x.shape[1:3], w.shape[:2], strides, padding)
  dtype = jnp.result_type(x, w)
  x, w = x.astype(dtype), w.astype(dtype)
  if impl == "xla":
    return _stock_conv(x, w, strides, pads)
  return _conv_einsum_bwd(x, w, strides, pads, dx_impl)


def resolve_conv_impl(impl: str, *, strides: Sequence[int], backend: str | None = None) -> str:
  """Maps ``"auto"`` to ``"einsum"`` or ``"xla"`` for this backend and layer.

  Args:
    impl: ``"xla"``, ``"einsum"`` or ``"auto"``.
    strides: the layer's ``(s_h, s_w)``.
    backend: platform name; defaults to ``jax.default_backend()``.

  Returns:
    ``"xla"`` or ``"einsum"``.

  Raises:
    ValueError: if ``impl`` is not one of `CONV_IMPLS`.
  """
  if impl not in CONV_IMPLS:
    raise ValueError(f"conv_impl must be one of {CONV_IMPLS}; got {impl!r}")
  if impl != "auto":
    return impl
  backend = backend or jax.default_backend()
  if backend == "cpu" and max(strides) >= AUTO_MIN_STRIDE:
    return "einsum"
  return "xla"


def lecun_normal_hwio(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
  """``nn.initializers.lecun_normal()`` of an HWIO kernel, drawn as a ``[k_h k_w C_in, C_out]``
  matrix and reshaped.

  The values are bit-identical to the 4-D draw (the fan-in is the same, and jax draws the bits of
  a shape in row-major order), but XLA:CPU compiles a 2-D random draw about 3x faster than a 4-D
  one (measured here: 5 convs' init 2.75 -> 0.86 s of compile CPU time), and init is compiled
  once per model.
  """
  shape = tuple(shape)
  flat = (math.prod(shape[:-1]), shape[-1])
  return nn.initializers.lecun_normal()(key, flat, dtype).reshape(shape)


class Conv(nn.Module):
  """Drop-in for ``nn.Conv`` (NHWC, HWIO ``kernel`` and ``bias`` params) with ``conv_impl``.

  Attributes:
    features: output channels.
    kernel_size: ``(k_h, k_w)``.
    strides: ``(s_h, s_w)``.
    padding: ``"SAME"``, ``"VALID"`` or explicit pairs.
    use_bias: add a learned bias.
    dtype: compute dtype (e.g. ``jnp.bfloat16`` on GPU/TPU); params stay ``param_dtype``.
    param_dtype: parameter dtype (float32).
    conv_impl: backward implementation, see `conv2d` (``"auto"``: einsum on CPU for strided convs).
    kernel_init: kernel initialiser (default: `lecun_normal_hwio`, flax's default drawn cheaper).
    bias_init: bias initialiser.
  """

  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  padding: Padding = "SAME"
  use_bias: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  conv_impl: str = "auto"
  kernel_init: Callable = lecun_normal_hwio
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = self.kernel_size
    kernel = self.param(
      "kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), self.param_dtype
    )
    y = conv2d(
      x.astype(self.dtype),
      kernel.astype(self.dtype),
      self.strides,
      self.padding,
      impl=self.conv_impl,
    )
    if self.use_bias:
      bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
      y = y + bias.astype(self.dtype)[None, None, None, :]
    return y
