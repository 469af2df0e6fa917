"""The curve figures say each thing once and legibly: the final evaluation, titles, legends."""

from __future__ import annotations

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from vision_jax import plotting

# A run as the training loop logs it (`make demo`'s, cut short): training metrics every 50 steps,
# an evaluation every 150, and the final evaluation once more at the last step, equal to the last.
EVALS = {150: (0.9694, 0.1022), 300: (0.9666, 0.0810), 450: (0.9777, 0.0560), 600: (0.9749, 0.0512)}
RECORDS = [
  {"step": s, "train/accuracy": 0.70 + 0.0005 * s, "train/loss": 1.0 / (1 + s / 50)}
  for s in range(50, 650, 50)
]
RECORDS += [
  {"step": s, "test/accuracy": a, "test/error": 1 - a, "test/loss": l}
  for s, (a, l) in EVALS.items()
]
RECORDS.append(
  {
    "step": 600,
    "final_test/accuracy": 0.9749,
    "final_test/error": 1 - 0.9749,
    "final_test/loss": 0.0512,
  }
)


def _run(seed: float) -> list[dict]:
  return [
    {
      "step": s,
      "train/loss": 2.0 / s + seed,
      "train/accuracy": 1 - 1.0 / s,
      "test/error": 0.5 / s + seed,
    }
    for s in range(1, 9)
  ] + [{"step": 8, "final_test/error": 0.5 / 8 + seed}]


@pytest.fixture
def drawn(monkeypatch):
  """The figures the plotting functions draw, kept (laid out and saved as before) for a look."""
  figures = []
  save = plotting._save

  def keep(fig, path):
    figures.append(fig)
    return save(fig, path)

  monkeypatch.setattr(plotting, "_save", keep)
  return figures


def _overlaps(fig) -> list[str]:
  """What in the drawn figure covers what: its title over a panel's title (or below it), its legends
  over a panel (the panel's title, tick labels and axis labels included)."""
  canvas = FigureCanvasAgg(fig)  # saving closed the figure, which took its canvas
  canvas.draw()
  renderer = canvas.get_renderer()
  found = []
  title = fig._suptitle  # pylint: disable=protected-access
  for ax in fig.axes:
    for panel_title in (ax.title, ax._left_title, ax._right_title):  # pylint: disable=protected-access
      if title is None or not panel_title.get_text():
        continue
      above, below = title.get_window_extent(renderer), panel_title.get_window_extent(renderer)
      if above.overlaps(below) or above.y0 < below.y1:
        found.append(f"figure title {title.get_text()!r} on panel title {panel_title.get_text()!r}")
    for legend in fig.legends:
      if legend.get_window_extent(renderer).overlaps(ax.get_tightbbox(renderer)):
        found.append(
          f"figure legend {[t.get_text() for t in legend.get_texts()]} on panel {ax.get_title()!r}"
        )
  return found


def test_the_final_evaluation_is_a_star_with_its_value_not_a_curve_under_the_last_point(
  tmp_path, drawn
):
  plotting.plot_curves(RECORDS, str(tmp_path / "curves.png"), title="lenet5_digits")
  (fig,) = drawn
  assert [ax.get_title() for ax in fig.axes] == ["accuracy (%)", "error (%)", "loss"]
  for ax, final_value, written in zip(
    fig.axes, (97.49, 2.51, 0.0512), ("97.49%", "2.51%", "0.0512")
  ):
    lines = {line.get_label(): line for line in ax.lines}
    test, final = lines["test"], lines["final test"]
    # On the test curve's last point, and still seen: another marker, bigger, drawn over it.
    assert (final.get_xdata()[0], final.get_ydata()[0]) == pytest.approx(
      (test.get_xdata()[-1], test.get_ydata()[-1])
    )
    assert final.get_ydata()[0] == pytest.approx(final_value)
    assert final.get_marker() not in {line.get_marker() for line in ax.lines if line is not final}
    assert (
      final.get_markersize() >= 3 * test.get_markersize() and final.get_zorder() > test.get_zorder()
    )
    assert final.get_color() == test.get_color()  # the test split's colour, as in every panel
    assert [t.get_text() for t in ax.texts] == [written]
    assert ax.get_legend() is None
  # Named once, under the panels, the splits keeping their colours from panel to panel.
  (legend,) = fig.legends
  assert [t.get_text() for t in legend.get_texts()] == ["train", "test", "final test"]
  assert (
    len({line.get_color() for ax in fig.axes for line in ax.lines if line.get_label() == "test"})
    == 1
  )
  assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_evaluated_only_at_its_end_still_shows_its_final_point(tmp_path, drawn):
  records = [{"step": s, "train/loss": 1.0 / s} for s in range(1, 5)] + [
    {"step": 4, "final_test/error": 0.1}
  ]
  plotting.plot_curves(records, str(tmp_path / "curves.png"))
  (fig,) = drawn
  error = fig.axes[0]
  assert error.get_title() == "error (%)" and [line.get_label() for line in error.lines] == [
    "final test"
  ]
  assert [t.get_text() for t in error.texts] == ["10.00%"]


def test_figure_titles_and_legends_are_clear_of_the_panels(tmp_path, drawn):
  plotting.plot_curves(RECORDS, str(tmp_path / "curves.png"), title="lenet5_digits")
  runs = {"lr=0.1": _run(0.0), "lr=0.01": _run(0.01)}
  plotting.plot_runs(
    runs,
    ["train/loss", "test/error"],
    str(tmp_path / "runs.png"),
    title="resnet_cifar10 / lr",
    scales={"test/error": 100.0},
  )
  curves = [
    {"key": "train/accuracy", "complement": True, "style": "dashed", "label": "train"},
    {"key": "test/error", "style": "bold", "label": "test"},
  ]
  plotting.plot_panels(
    {"plain": {"plain20": _run(0.0)}, "ResNet": {"resnet20": _run(0.01)}},
    curves,
    str(tmp_path / "figure6.png"),
    title="resnet_cifar10 / degradation",
    scale=100.0,
  )
  plotting.plot_panels(
    {"": {"plain20": _run(0.0)}}, curves, str(tmp_path / "one_panel.png"), title="one panel"
  )
  assert len(drawn) == 4
  for fig in drawn:
    assert _overlaps(fig) == []
