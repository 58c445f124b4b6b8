"""The one matplotlib set-up: headless (Agg backend) pyplot and figure saving.

Every plot in the library, the experiments and the benchmarks goes through these two, so a run on
a machine without a display never opens a window and every PNG is written the same way.
"""

from __future__ import annotations

import os
from typing import Any


def pyplot() -> Any:
  """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 110) -> str:
  """Lays out ``fig`` tightly, writes it to ``path`` and closes it (frees its memory).

  Returns:
    ``path`` as a string.
  """
  import matplotlib.pyplot as plt

  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  plt.close(fig)
  return os.fspath(path)
