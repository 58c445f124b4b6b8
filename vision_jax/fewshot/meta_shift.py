"""Meta shift: how much a class's prototype moves between episodes.

For a novel class ``c`` seen in episodes ``e = 1..E_c`` with prototypes ``p_c^{(e)}``:

.. math::

  v_c = \\frac{1}{E_c} \\sum_e \\lVert p_c^{(e)} - \\bar p_c \\rVert^2, \\qquad
  b = \\frac{1}{C} \\sum_c \\lVert \\bar p_c - \\bar p \\rVert^2, \\qquad r_c = v_c / b,

``bar p_c`` the class's mean prototype, ``bar p`` the mean over classes. ``v_c`` is the trace of
the prototype covariance across episodes (the paper's "meta shift"); ``r_c`` divides it by the
spread between the classes' mean prototypes, which makes it comparable between two embeddings of
different scale (ProtoNet vs CRN).

Choice: the normalised ratio ``r_c`` is the reported number; the paper gives no formula.
"""

from __future__ import annotations

import numpy as np


def prototype_shift(protos, classes) -> dict[str, np.ndarray]:
  """Per-class prototype variance across episodes.

  Args:
    protos: ``[E, N, D]`` prototypes of ``E`` episodes.
    classes: ``[E, N]`` class id of each prototype.

  Returns:
    ``{"classes": [C] sorted ids, "count": [C] episodes each, "variance": [C] v_c,
    "between": scalar b, "ratio": [C] r_c}``. Classes seen in fewer than 2 episodes are dropped.

  Raises:
    ValueError: mismatched shapes, or fewer than 2 classes seen twice.
  """
  p, c = np.asarray(protos, np.float64), np.asarray(classes)
  if p.ndim != 3 or c.shape != p.shape[:2]:
    raise ValueError(f"protos must be [E, N, D] and classes [E, N]; got {p.shape} and {c.shape}.")
  flat_p, flat_c = p.reshape(-1, p.shape[-1]), c.reshape(-1)
  ids, counts = np.unique(flat_c, return_counts=True)
  keep = ids[counts >= 2]
  if len(keep) < 2:
    raise ValueError(
      f"need >= 2 classes seen in >= 2 episodes; got counts {dict(zip(ids, counts))}"
    )
  means, var, cnt = [], [], []
  for k in keep:
    x = flat_p[flat_c == k]
    m = x.mean(0)
    means.append(m)
    var.append(np.mean(np.sum((x - m) ** 2, axis=1)))
    cnt.append(len(x))
  means = np.stack(means)
  between = float(np.mean(np.sum((means - means.mean(0)) ** 2, axis=1)))
  var = np.asarray(var)
  return {
    "classes": keep,
    "count": np.asarray(cnt),
    "variance": var,
    "between": np.asarray(between),
    "ratio": var / between,
  }
