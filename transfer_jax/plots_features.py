"""Figures of features: t-SNE of source and target features before and after adaptation, and the
proxy A-distance between them (`python -m transfer_jax.plots tsne|pad`, see `plots`). Features
are those of a run's checkpointed backbone, computed and cached by `features.extract`."""

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from transfer_jax import config_lib
from transfer_jax.errors import UserError
from transfer_jax.features import extract, probes
from transfer_jax.plots_drawing import legend_below, panels, run_title, save_figure
from transfer_jax.training import workdir as workdir_lib

MARKERS = 'os^vD<>PX*ph8d'
DOMAIN_COLOURS = {'source': 'tab:blue', 'target': 'tab:red'}


def run_features(workdir: str, splits: Sequence[str] = ('source/test', 'target/test'),
                 step: int = -1, cache_dir: str = '') -> dict[str, Any]:
  """Backbone features of a run's checkpoint at `step` (-1: the latest) on `splits`, through
  `features.extract` with the run's own config.json; {split: extract.Features}."""
  path = os.path.join(workdir, workdir_lib.CONFIG_FILE)
  if not os.path.isfile(path):
    raise UserError(f'no {workdir_lib.CONFIG_FILE} in {workdir}; give the workdir of a run')
  config = config_lib.saved_config(path)   # With the fields added since the run (ADDED_KEYS).
  config.init_from.update(path=os.path.abspath(workdir), step=step, best=False, load='.*',
                          skip='', rename=())
  features, _ = extract.extract_all(config, cache_dir or os.path.join(workdir, 'features'))
  unknown = [s for s in splits if s not in features]
  if unknown:
    raise UserError(f'run {workdir} has no split {unknown[0]}; choose among '
                    f'{", ".join(sorted(features))}')
  return {s: features[s] for s in splits}


def proxy_a_distance(source_features: np.ndarray, target_features: np.ndarray,
                     seed: int = 0) -> float:
  """PAD = 2 (1 - 2 err) (Ben-David et al. 2007; Ganin et al. 2016, Sec. 6.1.3): err is the
  test error of a linear classifier (L2 logistic regression, `features.probes`) told to separate
  the domains. Both domains are subsampled to the same size (chance error 0.5, PAD 0), half of
  each trains (a quarter of that half chooses the L2 strength), the other half tests."""
  n = min(len(source_features), len(target_features))
  if n < 8:
    raise UserError(f'the proxy A-distance needs at least 8 examples per domain, got {n}')
  rng = np.random.default_rng(seed)
  source = np.asarray(source_features, np.float32)[rng.permutation(len(source_features))[:n]]
  target = np.asarray(target_features, np.float32)[rng.permutation(len(target_features))[:n]]
  half, quarter = n // 2, n // 8

  def rows(start, stop):
    x = np.concatenate([source[start:stop], target[start:stop]])
    return x, np.repeat(np.array([0, 1], np.int32), stop - start)

  selected = probes.select('logistic', rows(quarter, half), rows(0, quarter), num_classes=2)
  error = 1.0 - selected.probe.accuracy(*rows(half, n))
  return 2.0 * (1.0 - 2.0 * error)


def tsne_embedding(features: np.ndarray, seed: int = 0) -> np.ndarray:
  """2-d t-SNE (van der Maaten and Hinton 2008) of standardised features, PCA-initialised."""
  from sklearn.manifold import TSNE
  x = (features - features.mean(0)) / np.maximum(features.std(0), 1e-6)
  perplexity = min(30.0, (len(x) - 1) / 3)
  # One OpenMP thread: on a busy machine the spinning threads of sklearn's Barnes-Hut gradient
  # made a 100-point embedding 30x slower (10 s instead of 0.3 s).
  with threadpool_limits(1, user_api='openmp'):
    return TSNE(2, perplexity=perplexity, init='pca', random_state=seed).fit_transform(x)


def plot_tsne(before: str, after: str, output: str, max_examples: int = 500, seed: int = 0,
              splits: Sequence[str] = ('source/test', 'target/test'),
              cache_dir: str = '') -> dict[str, dict[str, Any]]:
  """Two panels (before, after adaptation): t-SNE of up to `max_examples` examples per domain,
  colour = domain, marker = class; the PAD of all examples of the two splits in each title.
  Returns {'before'|'after': {'run', 'pad', 'embedding', 'domains', 'labels'}}."""
  results = {}
  for name, workdir in (('before', before), ('after', after)):
    features = run_features(workdir, splits, cache_dir=cache_dir)
    source, target = (features[s] for s in splits)
    pad = proxy_a_distance(source.features, target.features, seed)
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(len(f.features))[:max_examples] for f in (source, target)]
    embedding = tsne_embedding(np.concatenate([source.features[picked[0]],
                                               target.features[picked[1]]]), seed)
    results[name] = {
        'run': workdir, 'pad': pad, 'embedding': embedding,
        'domains': np.repeat(['source', 'target'], [len(p) for p in picked]),
        'labels': np.concatenate([source.labels[picked[0]], target.labels[picked[1]]])}
  fig, axes = panels(2, width=5.0)
  for ax, (name, result) in zip(axes, results.items(), strict=True):
    for domain, colour in DOMAIN_COLOURS.items():
      for label in np.unique(result['labels']):
        where = (result['domains'] == domain) & (result['labels'] == label)
        ax.scatter(*result['embedding'][where].T, s=9, c=colour, alpha=0.6, linewidths=0,
                   marker=MARKERS[label % len(MARKERS)])
      ax.scatter([], [], c=colour, s=12, label=domain)
    ax.set(title=f'{name}: {run_title(result["run"])}, PAD {result["pad"]:.2f}',
           xticks=[], yticks=[])
  fig.legend(*axes[0].get_legend_handles_labels(), loc='outside lower center', ncols=2,
             fontsize='small', title='colour: domain; marker: class', title_fontsize='small')
  save_figure(fig, output)
  print(format_pads([(results['before']['pad'], results['after']['pad'])],
                    [f'{run_title(before)} vs {run_title(after)}']))
  return results


def plot_pads(pairs: Sequence[tuple[str, str]], output: str, labels: Sequence[str] = (),
              seed: int = 0, splits: Sequence[str] = ('source/test', 'target/test'),
              cache_dir: str = '') -> list[tuple[float, float]]:
  """PAD before and after adaptation for each (before, after) pair of workdirs: printed,
  drawn as grouped bars and written to PREFIX.json; returns [(before, after)]."""
  if labels and len(labels) != len(pairs):
    raise UserError(f'--labels has {len(labels)} names for {len(pairs)} pairs; give one each')
  labels = list(labels) or [run_title(after) for _, after in pairs]
  def pad_of(workdir):
    source, target = run_features(workdir, splits, cache_dir=cache_dir).values()
    return proxy_a_distance(source.features, target.features, seed)

  pads = [(pad_of(before), pad_of(after)) for before, after in pairs]
  fig, (ax,) = panels(1, width=max(4.0, 1.2 * len(pairs) + 2), height=3.5)
  x = np.arange(len(pairs))
  for offset, (i, name) in zip((-0.2, 0.2), enumerate(('before', 'after')), strict=True):
    ax.bar(x + offset, [p[i] for p in pads], width=0.4, label=f'{name} adaptation')
  ax.axhline(0.0, color='black', linewidth=0.8)
  ax.set(xticks=x, ylabel='proxy A-distance',
         ylim=(min(0.0, *(min(p) for p in pads)) - 0.05, 2.05))
  ax.set_xticklabels(labels, rotation=20 if len(pairs) > 3 else 0)
  legend_below(fig, ax)
  save_figure(fig, output)
  with open(output + '.json', 'w') as f:
    json.dump([{'label': label, 'before': b, 'after': a, 'runs': list(pair)}
               for label, (b, a), pair in zip(labels, pads, pairs, strict=True)], f, indent=2,
              ensure_ascii=False)
  print(format_pads(pads, labels))
  return pads


def format_pads(pads: Sequence[tuple[float, float]], labels: Sequence[str]) -> str:
  lines = [f'{"pair":<40} {"PAD before":>10} {"PAD after":>10}']
  lines += [f'{label[:40]:<40} {b:>10.3f} {a:>10.3f}'
            for label, (b, a) in zip(labels, pads, strict=True)]
  return '\n'.join(lines)
