"""What the figures of `plots` share: panels on matplotlib's Agg canvas (no display), one legend
below them, PNG and PDF files, and a run's name in a legend or title."""

import os
from typing import Any

from transfer_jax.training import workdir as workdir_lib


def panels(count: int, width: float = 4.0, height: float | None = None):
  """A figure of `count` panels (at most 4 a row) of `width` x `height` inches (default 0.8
  `width`) on the Agg canvas, and its axes in order."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  per_row = min(count, 4)
  rows = -(-count // per_row)
  fig = Figure(figsize=(width * per_row, (height or 0.8 * width) * rows), layout='constrained')
  FigureCanvasAgg(fig)
  axes = fig.subplots(rows, per_row, squeeze=False).ravel()
  for ax in axes[count:]:
    ax.set_visible(False)
  return fig, list(axes[:count])


def save_figure(fig: Any, output: str) -> list[str]:
  """Writes OUTPUT.png (150 dpi) and OUTPUT.pdf; returns their paths."""
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  paths = [f'{output}.{ext}' for ext in ('png', 'pdf')]
  for path in paths:
    fig.savefig(path, dpi=150)
  print('wrote ' + ', '.join(paths))
  return paths


def legend_below(fig: Any, *axes: Any) -> None:
  """One legend for the figure, under the panels, so it never covers a curve; entries of the
  same label in several panels are shown once."""
  entries = {}
  for ax in axes:
    for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
      entries.setdefault(label, handle)
  if entries:
    fig.legend(list(entries.values()), list(entries), loc='outside lower center',
               ncols=min(len(entries), 4), fontsize='small')


def run_title(workdir: str) -> str:
  """'dann A→W s0' from the run's config.json, else the workdir's name."""
  try:
    config = workdir_lib.read_saved_config(workdir)
    domains = [config['data'][r]['name'].rsplit('/', 1)[-1][:1].upper() for r in ('source',
                                                                                    'target')]
    return f'{config["method"]["name"]} {"→".join(domains)} s{config["seed"]}'
  except (OSError, KeyError, TypeError, ValueError):   # UserError too: an unreadable config.
    return os.path.basename(os.path.normpath(workdir))[:30]
