"""MIPS datasets: word2vec sample from ``wefe``, ann-benchmarks HDF5, synthetic clustered data.

Nothing here downloads. ``load_word2vec_sample`` reads the gensim ``KeyedVectors`` pickle shipped
inside the PyPI package ``wefe`` (13,013 × 300, unnormalised) without gensim, and caches it as
``.npy`` under the user cache directory.
"""

from __future__ import annotations

import importlib.util
import os
import pickle

import numpy as np

WEFE_INSTALL = ".venv/bin/pip install --no-deps wefe==1.0.1"


def default_cache_dir() -> str:
  """``$VISION_JAX_CACHE`` or ``$XDG_CACHE_HOME/vision_jax`` (default ``~/.cache/vision_jax``)."""
  if os.environ.get("VISION_JAX_CACHE"):
    return os.environ["VISION_JAX_CACHE"]
  base = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
  return os.path.join(base, "vision_jax")


class _Stub:
  """Stand-in for gensim classes: keeps the pickled ``__dict__``."""

  def __setstate__(self, state):
    if isinstance(state, dict):
      self.__dict__.update(state)


_ALLOWED_NUMPY = {
  ("numpy.core.multiarray", "_reconstruct"),
  ("numpy._core.multiarray", "_reconstruct"),
  ("numpy.core.multiarray", "scalar"),
  ("numpy._core.multiarray", "scalar"),
  ("numpy", "ndarray"),
  ("numpy", "dtype"),
}


class _KeyedVectorsUnpickler(pickle.Unpickler):
  """Restricted unpickler: numpy arrays/scalars and inert stubs for ``gensim.*`` classes only."""

  def find_class(self, module, name):
    if module.startswith("gensim."):
      return type(name, (_Stub,), {})
    if (module, name) in _ALLOWED_NUMPY:
      module = module.replace("numpy.core.", "numpy._core.")
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a KeyedVectors file")


def read_gensim_keyed_vectors(path: str) -> tuple[np.ndarray, list[str]]:
  """Reads a gensim (3.x/4.x) ``KeyedVectors.save`` pickle without gensim.

  Returns:
    ``(vectors [n, d] float32, words [n])``.

  Raises:
    ValueError: the file holds no ``vectors`` array (e.g. vectors stored in a side ``.npy``).
  """
  with open(path, "rb") as f:
    obj = _KeyedVectorsUnpickler(f).load()
  state = getattr(obj, "__dict__", {})
  vecs = state.get("vectors")
  if not isinstance(vecs, np.ndarray):
    raise ValueError(f"{path!r}: no inline 'vectors' array (keys: {sorted(state)})")
  words = state.get("index2word") or state.get("index_to_key") or []
  return np.asarray(vecs, np.float32), [str(w) for w in words]


def load_word2vec_sample(cache_dir: str | None = None) -> tuple[np.ndarray, list[str]]:
  """The word2vec sample shipped in ``wefe`` (13,013 × 300 float32, unnormalised).

  The first call converts ``wefe/datasets/data/test_model.kv`` to ``word2vec_wefe.npy`` (+ a
  words file) in ``cache_dir``; later calls read the cache.

  Raises:
    ModuleNotFoundError: ``wefe`` is not installed, with the install command.
  """
  cache_dir = cache_dir or default_cache_dir()
  npy = os.path.join(cache_dir, "word2vec_wefe.npy")
  words_path = os.path.join(cache_dir, "word2vec_wefe.words.txt")
  if os.path.exists(npy) and os.path.exists(words_path):
    with open(words_path, encoding="utf-8") as f:
      words = f.read().split("\n")
    return np.load(npy), words
  spec = importlib.util.find_spec("wefe")
  if spec is None or spec.origin is None:
    raise ModuleNotFoundError(
      "the word2vec sample needs the PyPI package 'wefe' (its data file only); install it with: "
      f"{WEFE_INSTALL}  (--no-deps: its metadata pins an old numpy)"
    )
  kv = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "test_model.kv")
  if not os.path.exists(kv):
    raise FileNotFoundError(f"wefe is installed but {kv!r} is missing; reinstall: {WEFE_INSTALL}")
  vecs, words = read_gensim_keyed_vectors(kv)
  os.makedirs(cache_dir, exist_ok=True)
  tmp = npy + ".tmp.npy"
  np.save(tmp, vecs)
  os.replace(tmp, npy)
  with open(words_path + ".tmp", "w", encoding="utf-8") as f:
    f.write("\n".join(words))
  os.replace(words_path + ".tmp", words_path)
  return vecs, words


def load_ann_benchmarks_hdf5(path: str) -> dict:
  """Reads an ann-benchmarks HDF5 file (e.g. ``glove-100-angular.hdf5``).

  Returns:
    dict with ``train [n, d]``, ``test [nq, d]`` float32, ``neighbors [nq, K]`` int32,
    ``distances [nq, K]`` float32 and ``distance`` (the file's ``distance`` attribute, e.g.
    ``"angular"``).

  Raises:
    FileNotFoundError / ModuleNotFoundError (h5py) / KeyError naming the missing dataset;
    ValueError naming the path for a file that is not HDF5 (truncated, another format).
  """
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"ann-benchmarks file not found: path={path!r}. Download it yourself (e.g. "
      "glove-100-angular.hdf5 from the ann-benchmarks site) and pass its path."
    )
  try:
    import h5py
  except ModuleNotFoundError:
    raise ModuleNotFoundError(
      "reading ann-benchmarks HDF5 needs h5py: .venv/bin/pip install h5py==3.16.0"
    ) from None
  out = {}
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise ValueError(
      f"ann-benchmarks file {path!r} is not a readable HDF5 file ({e}); it is truncated or of "
      "another format, download it again"
    ) from e
  with f:
    for name in ("train", "test", "neighbors", "distances"):
      if name not in f:
        raise KeyError(f"{path!r} has no dataset {name!r} (found {sorted(f.keys())})")
    out["train"] = np.asarray(f["train"], np.float32)
    out["test"] = np.asarray(f["test"], np.float32)
    out["neighbors"] = np.asarray(f["neighbors"], np.int32)
    out["distances"] = np.asarray(f["distances"], np.float32)
    dist = f.attrs.get("distance", "")
    out["distance"] = dist.decode() if isinstance(dist, bytes) else str(dist)
  return out


def write_ann_benchmarks_hdf5(path: str, train, test, neighbors, distances, distance="angular"):
  """Writes the ann-benchmarks layout (used for test fixtures)."""
  import h5py

  with h5py.File(path, "w") as f:
    f.attrs["distance"] = distance
    f.attrs["point_type"] = "float"
    f.create_dataset("train", data=np.asarray(train, np.float32))
    f.create_dataset("test", data=np.asarray(test, np.float32))
    f.create_dataset("neighbors", data=np.asarray(neighbors, np.int32))
    f.create_dataset("distances", data=np.asarray(distances, np.float32))


def synthetic_clustered(
  n: int,
  dim: int = 100,
  *,
  num_clusters: int = 100,
  cluster_std: float = 0.3,
  norm_exponent: float = 3.0,
  normalize: bool = False,
  seed: int = 0,
  dtype=np.float32,
) -> np.ndarray:
  """Clustered data with power-law norms, generated in chunks (1M × 100 is fine).

  Directions: a Gaussian mixture around ``num_clusters`` random unit means, normalised. Norms:
  Pareto-like ``1 + Lomax(norm_exponent)`` (heavier tail for smaller exponents), unless
  ``normalize`` (unit rows, the angular/GloVe setting).

  Returns:
    ``[n, dim]`` array.
  """
  rng = np.random.default_rng(seed)
  means = rng.normal(size=(num_clusters, dim))
  means /= np.linalg.norm(means, axis=1, keepdims=True)
  out = np.empty((n, dim), dtype)
  chunk = 100_000
  for s in range(0, n, chunk):
    m = min(chunk, n - s)
    lab = rng.integers(0, num_clusters, m)
    v = means[lab] + cluster_std * rng.normal(size=(m, dim)) / np.sqrt(dim) * 3.0
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    if not normalize:
      v *= (1.0 + rng.pareto(norm_exponent, size=m))[:, None]
    out[s : s + m] = v
  return out


def split_queries(x: np.ndarray, num_queries: int, *, seed: int = 0):
  """Holds out ``num_queries`` random rows as queries. Returns ``(database, queries)``."""
  if not 0 < num_queries < len(x):
    raise ValueError(f"num_queries={num_queries} must be in (0, {len(x)})")
  perm = np.random.default_rng(seed).permutation(len(x))
  return x[perm[num_queries:]], x[perm[:num_queries]]
