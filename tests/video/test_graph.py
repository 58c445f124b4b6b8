"""Frame graphs: dense cosine adjacency, blockwise kNN, GCN propagation vs NumPy brute force."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.video import graph


def _data(b=2, n=13, d=5, seed=0, valid=(9, 13)):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(b, n, d)).astype(np.float32)
  mask = np.arange(n)[None, :] < np.asarray(valid)[:, None]
  return x, mask


def _np_adjacency(x, mask, norm, tau=1.0):
  """Loop-by-loop reference of the module docstring's two normalisations."""
  b, n, _ = x.shape
  out = np.zeros((b, n, n))
  for bi in range(b):
    idx = np.flatnonzero(mask[bi])
    for i in idx:
      row = np.zeros(n)
      for j in idx:
        c = (
          1.0
          if i == j
          else x[bi, i] @ x[bi, j] / np.linalg.norm(x[bi, i]) / np.linalg.norm(x[bi, j])
        )
        row[j] = max(c, 0.0) if norm == "relu" else np.exp(c / tau)
      out[bi, i] = row if norm == "relu" else row / row.sum()
    if norm == "relu":
      d = out[bi].sum(1)
      for i in idx:
        for j in idx:
          out[bi, i, j] /= np.sqrt(d[i] * d[j])
  return out


@pytest.mark.parametrize("norm,tau", [("relu", 1.0), ("softmax", 0.3)])
def test_dense_adjacency_matches_bruteforce(norm, tau):
  x, mask = _data()
  a = np.asarray(
    graph.dense_adjacency(jnp.asarray(x), jnp.asarray(mask), norm=norm, temperature=tau)
  )
  np.testing.assert_allclose(a, _np_adjacency(x, mask, norm, tau), rtol=1e-5, atol=1e-6)
  assert np.all(a[0, 9:] == 0) and np.all(a[0, :, 9:] == 0)  # padding rows / cols
  if norm == "relu":
    np.testing.assert_allclose(a, np.swapaxes(a, 1, 2), atol=1e-6)
  else:
    np.testing.assert_allclose(a.sum(-1)[0, :9], 1.0, rtol=1e-5)


def test_cosine_is_symmetric_with_unit_diagonal():
  x, mask = _data()
  c = np.asarray(graph.cosine_similarity(jnp.asarray(x), jnp.asarray(mask)))
  np.testing.assert_allclose(c, np.swapaxes(c, 1, 2), atol=1e-6)
  np.testing.assert_allclose(np.diagonal(c[1]), 1.0, rtol=1e-6)
  assert np.all(np.diagonal(c[0])[9:] == 0)


def test_knn_topk_matches_argsort():
  x, mask = _data(n=37, valid=(30, 37), seed=1)
  sim, idx = graph.knn_topk(jnp.asarray(x), jnp.asarray(mask), k=6, row_block=8, col_block=5)
  xn = x / np.linalg.norm(x, axis=-1, keepdims=True)
  for b in range(2):
    nv = int(mask[b].sum())
    c = xn[b, :nv] @ xn[b, :nv].T
    np.fill_diagonal(c, -np.inf)
    ref = np.argsort(-c, axis=1)[:, :6]
    np.testing.assert_array_equal(np.asarray(idx)[b, :nv], ref)
    np.testing.assert_allclose(
      np.asarray(sim)[b, :nv], np.take_along_axis(c, ref, 1), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("norm", ["relu", "softmax"])
def test_knn_with_all_neighbours_equals_dense(norm):
  x, mask = _data(n=21, valid=(15, 21), seed=2)
  h = np.random.default_rng(3).normal(size=(2, 21, 4)).astype(np.float32)
  xa, ma, ha = map(jnp.asarray, (x, mask, h))
  dense = graph.propagate_dense(graph.dense_adjacency(xa, ma, norm=norm, temperature=0.5), ha)
  g = graph.knn_adjacency(xa, ma, k=20, norm=norm, temperature=0.5, row_block=4, col_block=6)
  np.testing.assert_allclose(graph.propagate_knn(g, ha), dense, rtol=1e-5, atol=1e-6)


def test_knn_sparse_matches_bruteforce_restricted_graph():
  x, mask = _data(n=17, valid=(17, 11), seed=4)
  h = np.random.default_rng(5).normal(size=(2, 17, 3)).astype(np.float32)
  g = graph.knn_adjacency(jnp.asarray(x), jnp.asarray(mask), k=3, row_block=5, col_block=4)
  out = np.asarray(graph.propagate_knn(g, jnp.asarray(h)))
  xn = x / np.linalg.norm(x, axis=-1, keepdims=True)
  for b in range(2):
    nv = int(mask[b].sum())
    c = xn[b, :nv] @ xn[b, :nv].T
    np.fill_diagonal(c, -np.inf)
    a = np.eye(nv)
    for i in range(nv):
      for j in np.argsort(-c[i])[:3]:
        a[i, j] = max(c[i, j], 0.0)
    d = a.sum(1)
    ref = (a / np.sqrt(d[:, None] * d[None, :])) @ h[b, :nv]
    np.testing.assert_allclose(out[b, :nv], ref, rtol=1e-5, atol=1e-6)
    assert np.all(out[b, nv:] == 0)


def test_gcn_propagation_is_permutation_equivariant():
  x, mask = _data(b=1, n=12, valid=(12,))
  perm = np.random.default_rng(6).permutation(12)
  m = jnp.asarray(mask)
  f = lambda z: graph.propagate_dense(graph.dense_adjacency(z, m), z)
  np.testing.assert_allclose(
    np.asarray(f(jnp.asarray(x)))[:, perm], f(jnp.asarray(x[:, perm])), rtol=1e-5, atol=1e-6
  )


def _temp_bytes(fn, n, d=16):
  args = (
    jax.ShapeDtypeStruct((1, n, d), jnp.float32),
    jax.ShapeDtypeStruct((1, n), jnp.bool_),
  )
  return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


def test_knn_memory_is_linear_not_quadratic():
  knn = lambda x, m: graph.propagate_knn(graph.knn_adjacency(x, m, k=8), x)
  dense = lambda x, m: graph.propagate_dense(graph.dense_adjacency(x, m), x)
  small, big = _temp_bytes(knn, 1024), _temp_bytes(knn, 4096)
  assert big < 4096 * 4096 * 4 / 8  # far below one dense N x N float32 matrix
  assert big / small < 6  # 4x the frames: ~4x the memory, not 16x
  assert _temp_bytes(dense, 4096) / _temp_bytes(dense, 1024) > 12


def test_bad_input():
  x, mask = _data()
  with pytest.raises(ValueError, match="adjacency_norm"):
    graph.dense_adjacency(jnp.asarray(x), jnp.asarray(mask), norm="l1")
  with pytest.raises(ValueError, match="mask"):
    graph.dense_adjacency(jnp.asarray(x), jnp.asarray(mask[:, :3]))
  with pytest.raises(ValueError, match="k=0"):
    graph.knn_topk(jnp.asarray(x), jnp.asarray(mask), k=0)
  with pytest.raises(ValueError, match="temperature"):
    graph.knn_adjacency(jnp.asarray(x), jnp.asarray(mask), k=2, norm="softmax", temperature=0.0)
