"""Progress output: a tqdm bar on a terminal, a line every 10 % in a log."""

import io

from vision_jax.utils.progress import LineProgress, progress_bar


def test_line_progress_prints_every_ten_percent_not_every_step():
  out = io.StringIO()
  bar = LineProgress(200, unit="step", file=out, every_seconds=1e9)
  for _ in range(200):
    bar.update(1)
  lines = out.getvalue().splitlines()
  assert len(lines) == 10, lines
  assert "\r" not in out.getvalue()
  assert lines[0].startswith("20/200 step (10 %)") and lines[-1].startswith("200/200 step (100 %)")
  assert "ETA" in lines[0] and "step/s" in lines[0]


def test_line_progress_resumes_from_initial_and_shows_postfix():
  out = io.StringIO()
  bar = LineProgress(10, initial=5, file=out, every_seconds=1e9)
  bar.set_postfix_str("loss=0.5")
  for _ in range(5):
    bar.update(1)
  lines = out.getvalue().splitlines()
  assert lines[0].startswith("6/10") and lines[-1].startswith("10/10 it (100 %)")
  assert lines[-1].endswith("loss=0.5")
  bar.write("step 10: acc=1")
  assert out.getvalue().splitlines()[-1] == "step 10: acc=1"


def test_disabled_prints_nothing_and_env_forces_mode(monkeypatch, capsys):
  bar = LineProgress(4, disable=True)
  for _ in range(4):
    bar.update()
  assert capsys.readouterr().err == ""
  bar.write("x")  # messages still print, as tqdm.write does
  assert capsys.readouterr().err == "x\n"
  monkeypatch.setenv("VISION_JAX_PROGRESS", "lines")
  assert isinstance(progress_bar(3), LineProgress)
  monkeypatch.setenv("VISION_JAX_PROGRESS", "bar")
  assert not isinstance(progress_bar(3, disable=True), LineProgress)
