"""Office-Caltech10 with 800-d SURF bag-of-words features (the GFK release), an MLP on top.

Domains A (amazon, 958), C (caltech, 1123), D (dslr, 157), W (webcam, 295); 10 classes. The
standard shallow protocol is transductive: all source images are labelled training data, all
target images are unlabelled training data and the target test set. Features are z-scored with
each domain's own statistics.

  python -m transfer_jax.main --config=configs/office_caltech_surf.py:source=A,target=W \\
      --workdir=runs/surf_a2w --config.data.manual_dir=../shared/datasets
Arguments: source, target in A|C|D|W; method (any of objectives.METHODS); tiny.
Multi-source: several source letters, e.g. `source=ACD,target=W`: the first is config.data.source,
the others are config.tasks sharing the main classifier (one batch per source domain per step;
alignment terms see all source rows against the target).

Expected (seed 0, 1000 steps, A -> W, target accuracy on all target images at the last step;
source accuracy is on the source training images):
  source_only 41.0 / 100.0 (14 s)   dann 40.7 / 100.0 (13 s)
Anchors for the 12-task average: no adaptation 41.1, CORAL 48.8 (Sun et al. 2016, linear SVM).
T4 (3 seeds, 500 steps, 10 % of the source held out; experiments/t4_office_caltech_surf.md, a sweep
file + report): source_only 44.4, mcc 47.7; three sources -> one (source=ACD,...;
experiments/t4_office_caltech_surf_multi_source.md): 59.3 / 63.9.
"""

import ml_collections

from transfer_jax.config_lib import (
  base_config,
  data_config,
  domain_config,
  model_config,
  parse_arg,
  task_config,
)
from transfer_jax.errors import UserError

DOMAINS = {'A': 'amazon', 'C': 'caltech', 'D': 'dslr', 'W': 'webcam'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, source='A', target='W', method='dann', tiny=False)
  for letter in arg.source + arg.target:
    if letter not in DOMAINS:
      raise UserError(f'unknown Office-Caltech10 domain {letter!r}; choose A, C, D or W')
  if len(arg.target) != 1 or arg.target in arg.source or len(set(arg.source)) != len(arg.source):
    raise UserError(f'source={arg.source}, target={arg.target}: give one target letter and '
                    'distinct source letters that do not include it')
  config = base_config(arg.method, arg.tiny)
  source, *extra = (domain_config(f'office_caltech10_surf/{DOMAINS[letter]}', test_split='train')
                    for letter in arg.source)
  target = domain_config(f'office_caltech10_surf/{DOMAINS[arg.target]}', test_split='train')
  config.data = data_config(source, target, image_size=0, normalize='standardize')
  for letter, domain in zip(arg.source[1:], extra, strict=True):
    config.tasks[letter] = task_config(domain)

  # 800 -> 256 features (ReLU), a linear classifier, a 256 -> 256 -> 1 domain discriminator.
  config.model = model_config('mlp', backbone_hidden=(256,), discriminator_hidden=(256,))
  config.batch_size = 32
  config.eval_batch_size = 256
  config.optimizer.weight_decay = 1e-3
  if arg.tiny:
    config.batch_size = 16
    config.eval_batch_size = 64
  return config
