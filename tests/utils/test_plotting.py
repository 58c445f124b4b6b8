import matplotlib

from vision_jax.utils.plotting import pyplot, save_figure


def test_pyplot_is_headless_and_save_figure_writes_and_closes(tmp_path):
  plt = pyplot()
  assert matplotlib.get_backend().lower() == "agg"
  fig, ax = plt.subplots()
  ax.plot([0, 1], [1, 0])
  out = save_figure(fig, tmp_path / "f.png", dpi=50)
  assert out == str(tmp_path / "f.png")
  with open(out, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert fig.number not in plt.get_fignums()
