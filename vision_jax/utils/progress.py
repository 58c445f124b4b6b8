"""Progress output that suits where it goes: a tqdm bar on a terminal, plain lines in a log.

When the stream is not a terminal (CI, ``nohup``, a log file) a tqdm bar writes hundreds of
carriage-return updates into the log. :func:`progress_bar` then returns a :class:`LineProgress`
instead, which prints one line every ``every_percent`` % of the work or every ``every_seconds``,
whichever comes first, with the rate, the elapsed time and an ETA.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO


def _fmt_time(seconds: float) -> str:
  seconds = max(int(seconds), 0)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class LineProgress:
  """The subset of tqdm's interface the library uses (``update``, ``set_postfix_str``,
  ``write``, ``close``, ``format_dict``), printing whole lines."""

  def __init__(
    self,
    total: int,
    *,
    initial: int = 0,
    desc: str = "",
    unit: str = "it",
    every_percent: float = 10.0,
    every_seconds: float = 60.0,
    file: TextIO | None = None,
    disable: bool = False,
  ):
    if total < 0:
      raise ValueError(f"total={total} must be >= 0")
    self.total, self.n, self.desc, self.unit = int(total), int(initial), desc, unit
    self.disable = disable
    self._file = file
    self._every_n = max(int(total * every_percent / 100.0), 1)
    self._every_s = float(every_seconds)
    self._t0 = self._t_last = time.perf_counter()
    self._n0 = self._n_last_print = self.n
    self._postfix = ""

  @property
  def file(self) -> TextIO:
    return self._file or sys.stderr

  @property
  def format_dict(self) -> dict[str, Any]:
    return {"elapsed": time.perf_counter() - self._t0, "n": self.n, "total": self.total}

  def _line(self) -> str:
    elapsed = time.perf_counter() - self._t0
    done = self.n - self._n0
    rate = done / elapsed if elapsed > 0 else 0.0
    pct = 100.0 * self.n / self.total if self.total else 100.0
    eta = (self.total - self.n) / rate if rate > 0 else float("nan")
    eta_s = _fmt_time(eta) if eta == eta else "?"
    head = f"{self.desc}: " if self.desc else ""
    tail = f", {self._postfix}" if self._postfix else ""
    return (
      f"{head}{self.n}/{self.total} {self.unit} ({pct:.0f} %), {rate:.2f} {self.unit}/s, "
      f"elapsed {_fmt_time(elapsed)}, ETA {eta_s}{tail}"
    )

  def update(self, n: int = 1) -> None:
    self.n += int(n)
    if self.disable:
      return
    now = time.perf_counter()
    if (
      self.n - self._n_last_print >= self._every_n
      or now - self._t_last >= self._every_s
      or self.n == self.total
    ):
      print(self._line(), file=self.file, flush=True)
      self._t_last, self._n_last_print = now, self.n

  def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
    del refresh
    self._postfix = s

  def write(self, s: str) -> None:
    """Prints ``s`` on its own line (also when disabled, as ``tqdm.write`` does)."""
    print(s, file=self.file, flush=True)

  def close(self) -> None:
    pass


def _is_tty(stream) -> bool:
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError):
    return False


def progress_bar(total: int, *, initial: int = 0, desc: str = "", unit: str = "it", disable=False):
  """A tqdm bar when stderr is a terminal, else a :class:`LineProgress`.

  ``VISION_JAX_PROGRESS=bar|lines`` forces one or the other.
  """
  mode = os.environ.get("VISION_JAX_PROGRESS", "")
  if mode == "lines" or (mode != "bar" and not _is_tty(sys.stderr)):
    return LineProgress(total, initial=initial, desc=desc, unit=unit, disable=disable)
  from tqdm.auto import tqdm

  return tqdm(
    total=total,
    initial=initial,
    desc=desc or None,
    unit=unit,
    disable=disable,
    dynamic_ncols=True,
    mininterval=1.0,
  )
