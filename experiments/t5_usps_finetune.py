"""T5 sweep: an MNIST-pretrained LeNet transferred to USPS with 10, 50 and all labels per class.

  python -m transfer_jax.sweep experiments/t5_usps_finetune.py
  python -m transfer_jax.report experiments/t5_usps_finetune.py --publish

Pretrains once (run `pretrain_mnist`: configs/mnist_usps.py:method=source_only, seed 0, full
MNIST, 1000 steps), then runs every recipe of configs/usps_finetune.py for each label budget and
seed (500 steps); the fine-tuning runs load `runs/t5_usps_finetune/pretrain_mnist` and wait for
it. The report writes experiments/t5_usps_finetune.{md,tex}: USPS test accuracy at the last step
(mean ± std over seeds), then every recipe against `scratch` (accuracy averaged over the label
budgets, wall time per run, trainable parameters). A smoke test in seconds:
  python -m transfer_jax.sweep experiments/t5_usps_finetune.py --workdir=/tmp/t5 \\
      --override total_steps=4
"""

CONFIG = 'configs/usps_finetune.py'
RECIPES = ('scratch', 'finetune', 'head_only', 'lp_ft', 'l2', 'l2_sp', 'fisher_sp')
BUDGETS = {10: '10 / class', 50: '50 / class', -1: 'all (7291)'}  # labels -> column.
SEEDS = (0, 1, 2)
PRETRAIN = 'pretrain_mnist'
DATA = {'data.manual_dir': '../shared/datasets'}

# The study of the penalty strength below was run by hand (not part of this sweep) at 4af3ea1.
L2_SP_NOTES = [
    '## Why L2-SP does not beat plain L2 at alpha = 0.01, and what happens when alpha grows',
    'At alpha = 0.01, 500 SGD steps at lr 0.01 shrink a weight by at most (1 - lr·alpha)^500 ≈ '
    '0.95 under either penalty: neither moves the network far from where fine-tuning takes it, '
    'so L2 and L2-SP differ by less than their seed-to-seed spread (85.1 ± 1.0 against 84.8 ± '
    '1.1 at commit 4af3ea1). The difference the paper reports appears once the penalty is '
    'strong enough to matter, because L2 pulls the transferred weights towards 0 (destroying the '
    'MNIST features) while L2-SP pulls them towards theta_S (keeping them). 10 labels per class, '
    '3 seeds, same runs otherwise:',
    '| alpha | l2 | l2_sp |\n'
    '|---|---|---|\n'
    '| 0.01 (the table above, at 4af3ea1) | 85.1 ± 1.0 | 84.8 ± 1.1 |\n'
    '| 0.1 | 80.5 ± 0.2 (80.7, 80.2, 80.7) | 85.1 ± 0.8 (86.1, 84.5, 84.6) |\n'
    '| 1.0 | 8.6 ± 0.3 (8.3, 8.8, 8.8) | 85.0 ± 0.2 (85.2, 84.9, 84.9) |',
    'Command (per alpha, recipe and seed; the pretrained model of the table above):\n'
    '`python -m transfer_jax.main --config=configs/usps_finetune.py:recipe=RECIPE,labels=10\n'
    '--workdir=runs/t5_alpha/RECIPE_alphaA/seedS --config.seed=S --config.regularizer.alpha=A\n'
    '--config.init_from.path=runs/t5/pretrain_mnist --config.data.manual_dir=../shared/datasets`\n'
    '(commit 4af3ea1; this sweep\'s pretrained model is runs/t5_usps_finetune/pretrain_mnist). '
    'L2-SP\'s '
    'advantage is robustness to the regularisation strength: it is never worse than '
    'fine-tuning, while L2 at a strength that would regularise a model trained from scratch '
    'wipes out what transfer brought. Hyperparameters were not selected on USPS test data.',
]
TABLE = {'rows': 'recipe', 'columns': 'labels', 'seed': 'seed', 'versus': 'scratch',
         'title': 'T5: MNIST-pretrained LeNet -> USPS with k labels per class',
         'notes': [
             'USPS test accuracy (%) at the last step (500 steps); selection rule: none (last '
             'step). The pretrained model (source-only on full MNIST, 1000 steps, seed 0) is '
             'the run `pretrain_mnist` above: target/test is USPS test with no USPS labels, '
             'source/test is MNIST test.',
             'Recipes and hyperparameters: configs/usps_finetune.py (SGD momentum 0.9, lr 0.01 '
             'constant, batch 64, alpha = beta = 0.01; the Fisher is scaled to mean 1 over the '
             'transferred parameters). Wall time: training seconds per fine-tuning run on 2 CPU '
             'cores, pretraining not counted; when other jobs share the cores (tests, a '
             'benchmark), read them as relative, not absolute.',
             *L2_SP_NOTES]}


def runs():
  """The pretraining run, then recipe x label budget x seed fine-tuning runs that load it."""
  yield {'name': PRETRAIN, 'config': 'configs/mnist_usps.py', 'arg': 'method=source_only',
         'overrides': dict(DATA)}
  for labels, column in BUDGETS.items():
    for recipe in RECIPES:
      pretrained = {} if recipe == 'scratch' else {'init_from.path': '{sweep_workdir}/' + PRETRAIN}
      for seed in SEEDS:
        yield {'arg': f'recipe={recipe},labels={labels}',
               'overrides': {'seed': seed, **DATA, **pretrained},
               'needs': [PRETRAIN] if pretrained else [],
               'labels': {'recipe': recipe, 'labels': column, 'seed': seed}}
