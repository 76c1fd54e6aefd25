"""Amazon reviews sentiment (Blitzer et al. 2007) in the DANN paper's setting (Table 1).

5000-d unigram/bigram count features; 2000 labelled source reviews, 2000 unlabelled target
reviews, reported on the target test reviews (books 4465, dvd 3586, electronics 5681,
kitchen 5945). One hidden layer of 100 units, as in the paper.

  python -m transfer_jax.main --config=configs/amazon_reviews.py:source=books,target=dvd \\
      --workdir=runs/amazon_b2d --config.data.manual_dir=../shared/datasets
Arguments: source, target in books|dvd|electronics|kitchen; method (a name of
objectives.METHODS: source_only, dann, cdan, dan, coral, mcc, mdd, ...); tiny.
The 12-pair table: experiments/t3_amazon_reviews.md.

Expected (seed 0, 1000 steps, books -> dvd, target / source test accuracy at the last step):
  source_only 80.1 / 82.6 (10 s)   dann 79.7 / 82.3 (11 s)
Anchor (DANN paper, Table 1, B -> D): NN .790, DANN .784.
T3 (12 pairs, 3 seeds, 10 % of the source held out; experiments/t3_amazon_reviews.md, a sweep file
+ report): source_only 76.1, dann 76.8, dan with method.trade_off_schedule=dann 77.1 (constant
lambda collapsed to 50.7 at commit fe2171e), mcc 72.7.
"""

import ml_collections

from transfer_jax.config_lib import base_config, data_config, domain_config, model_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, source='books', target='dvd', method='dann', tiny=False)
  config = base_config(arg.method, arg.tiny)
  source, target = (domain_config(f'amazon_reviews/{name}') for name in (arg.source, arg.target))
  config.data = data_config(source, target, image_size=0)

  # 5000 -> 100 features (ReLU), a linear classifier, a 100 -> 100 -> 1 domain discriminator.
  config.model = model_config('mlp', backbone_hidden=(100,), discriminator_hidden=(100,))
  config.batch_size = 32
  config.eval_batch_size = 1024
  config.optimizer.weight_decay = 0.0
  if arg.tiny:
    config.batch_size = 16
    config.eval_batch_size = 256
  return config
