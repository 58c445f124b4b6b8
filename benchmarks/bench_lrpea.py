"""Benchmark: leading eigenvector from data X (n x p, n < p), LR-PEA vs eigsh vs eigh.

From X with a planted rank-r eigenmatrix (Sigma = lam v v^T + I, vec^{-1}(v) of rank r):

* ours: ``matricized_power_method`` on ``covariance_operator(X)`` (matrix-free, jit),
  random start and partial-trace ("kronecker") start;
* ``scipy.sparse.linalg.eigsh(k=1)`` (ARPACK Lanczos) on a matrix-free ``LinearOperator``
  v -> X^T (X v) / n;
* ``numpy.linalg.eigh`` on the formed covariance X^T X / n (float64), skipped above
  ``--eigh_max_p`` (a 4e4 x 4e4 float64 matrix is 12.8 GB and an O(p^3) = 6e13 flop solve).

Each method's wall time (median of ``--repeats`` after a warm-up for the jitted code) and error
sin angle(v_hat, v) against the planted truth, in one run; ratios to ours are printed.

Run::

    python benchmarks/bench_lrpea.py                      # p = 1e4 (100x100) and 4e4 (200x200)
    python benchmarks/bench_lrpea.py --shapes=100x100 --n=1000 --spike=5 --repeats=3
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import jax
import numpy as np
import scipy
import scipy.sparse.linalg as sla

from vision_jax import linalg as L
from vision_jax.utils import package_versions


def sin_angle(a, b) -> float:
  a = np.asarray(a, np.float64).ravel()
  b = np.asarray(b, np.float64).ravel()
  c = abs(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))
  return math.sqrt(max(0.0, 1 - c * c))


def make_data(p1, p2, r, n, lam, seed):
  rng = np.random.default_rng(seed)
  u = np.linalg.qr(rng.normal(size=(p1, r)))[0]
  w = np.linalg.qr(rng.normal(size=(p2, r)))[0]
  m = (u * np.linspace(1.0, 0.5, r)[None, :]) @ w.T
  v = (m / np.linalg.norm(m)).ravel()
  x = rng.standard_normal((n, p1 * p2), dtype=np.float32)
  x += (math.sqrt(lam) * rng.standard_normal((n, 1), dtype=np.float32)) * v[None, :].astype(
    np.float32
  )
  return x, v


def timed(fn, repeats):
  times, out = [], None
  for _ in range(repeats):
    t = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times), out


def bench_shape(p1, p2, args):
  """Times every method on one planted-truth problem of shape (p1, p2); prints the table."""
  p = p1 * p2
  x, v = make_data(p1, p2, args.rank, args.n, args.spike, args.seed)
  rows = {}
  op = L.covariance_operator(x)
  starts = {"random": "ours (random start)", "kronecker": "ours (partial-trace start)"}
  for init in args.inits.split(","):
    name, kw = starts[init], dict(init=init)
    run = lambda kw=kw: jax.block_until_ready(
      L.matricized_power_method(
        op, (p1, p2), args.rank, tol=args.tol, max_iters=500, svd=args.svd, **kw
      )
    )
    run()  # warm-up: compile
    t, res = timed(run, args.repeats)
    rows[name] = dict(
      seconds=t,
      sin=sin_angle(res.vector, v),
      iters=int(res.num_iters),
      converged=bool(res.converged),
    )

  n = args.n
  count = [0]

  def matvec(z):
    count[0] += 1
    z = np.asarray(z, np.float32).ravel()
    return x.T @ (x @ z) / n

  lin = sla.LinearOperator((p, p), matvec=matvec, dtype=np.float32)
  v0 = np.ones(p, np.float32)

  def run_eigsh():
    count[0] = 0
    _, vec = sla.eigsh(lin, k=1, which="LA", tol=args.eigsh_tol, v0=v0)
    return vec[:, 0]

  t, vec = timed(run_eigsh, args.repeats)
  rows["scipy eigsh (matrix-free)"] = dict(
    seconds=t, sin=sin_angle(vec, v), iters=count[0], converged=True
  )

  if p <= args.eigh_max_p:

    def run_eigh():
      xd = x.astype(np.float64)
      cov = xd.T @ xd / n
      return np.linalg.eigh(cov)[1][:, -1]

    t, vec = timed(run_eigh, 1)
    rows["numpy eigh (formed cov)"] = dict(
      seconds=t, sin=sin_angle(vec, v), iters=0, converged=True
    )
  else:
    print(
      f"  numpy eigh skipped at p={p}: the covariance is {p * p * 8 / 1e9:.1f} GB (float64) "
      f"and eigh is O(p^3) = {p**3:.1e} flops (> --eigh_max_p={args.eigh_max_p})"
    )

  base = rows[starts[args.inits.split(",")[0]]]
  print(f"\np = {p} ({p1}x{p2}), n = {n}, n/p = {n / p:.3f}")
  print(
    f"  {'method':30s} {'wall s':>9s} {'sin∠(v̂,v)':>11s} {'matvecs':>8s} "
    f"{'time / ours':>12s} {'err / ours':>11s}"
  )
  print(
    "  (matvecs: ours = loop iterations, +1 final, +r^2 for the partial-trace start; "
    "eigsh = ARPACK operator calls)"
  )
  for name, row in rows.items():
    print(
      f"  {name:30s} {row['seconds']:9.3f} {row['sin']:11.4f} {row['iters']:8d} "
      f"{row['seconds'] / base['seconds']:12.2f} {row['sin'] / max(base['sin'], 1e-12):11.2f}"
      + ("" if row["converged"] else "  (not converged)")
    )
  return dict(p=p, shape=(p1, p2), rows=rows)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--shapes", default="100x100,200x200", help="comma list of p1xp2")
  ap.add_argument("--n", type=int, default=1000, help="samples (n < p)")
  ap.add_argument("--rank", type=int, default=1)
  ap.add_argument("--spike", type=float, default=5.0, help="lam in Sigma = lam v v^T + I")
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument(
    "--tol",
    type=float,
    default=1e-4,
    help="our step tolerance (1e-4 is far below the statistical error ~0.2)",
  )
  ap.add_argument("--eigsh_tol", type=float, default=1e-6, help="ARPACK relative Ritz tolerance")
  ap.add_argument("--eigh_max_p", type=int, default=10_000, help="skip numpy eigh above this p")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--svd", default="randomized", help="full | randomized (rank-r truncation)")
  ap.add_argument(
    "--inits",
    default="kronecker,random",
    help="our starts, comma list of kronecker|random; the first is the ratio base",
  )
  args = ap.parse_args(argv)

  vers = package_versions(("scipy", "scikit-learn"))
  dev = jax.devices()[0]
  print(
    f"device: {dev.device_kind} ({dev.platform}), {vers['devices']}; jax {vers['jax']}, "
    f"numpy {vers['numpy']}, scipy {scipy.__version__}"
  )
  print(
    f"n={args.n} rank={args.rank} spike lam={args.spike} repeats={args.repeats} (median wall s)"
  )
  results = []
  for spec in args.shapes.split(","):
    p1, p2 = (int(s) for s in spec.lower().split("x"))
    results.append(bench_shape(p1, p2, args))
  return results


if __name__ == "__main__":
  main()
