"""The config schema: every field of an experiment config, defined once with its comment.

`base_config` holds the fields every experiment shares; `model_config`, `data_config`,
`domain_config` and `task_config` build the sub-configs an experiment sets. Consumers read
fields as attributes: a field a consumer needs is defined here, never as a `.get` default.
`ADDED_KEYS` lists the fields added after runs may have been saved (training/workdir.py).
"""

import copy
import os
from typing import Any

import ml_collections


def base_config(method: str, tiny: bool) -> ml_collections.ConfigDict:
  """The fields every experiment shares (loop cadence, devices, optimizer, method defaults).

  An experiment config starts from this, sets `data` and `model`, and overrides what differs.
  """
  config = ml_collections.ConfigDict()
  config.seed = 0                     # Seeds parameters, data order and dropout.

  config.method = ml_collections.ConfigDict()
  config.method.name = method         # A key of objectives.METHODS ('source_only', 'dann', ...).
  config.method.trade_off = 1.0       # lambda: weight of the transfer term.
  config.method.trade_off_schedule = 'constant'  # lambda(p): times 'constant', 'linear', 'dann'.
  # Adversarial methods (dann, cdan, cdan_e, mdd): the gradient-reversal coefficient.
  # 'dann': coeff ramps 2/(1+exp(-gamma p))-1 in the progress p; 'warm_start': TLlib's
  # 2/(1+exp(-alpha i/N))-1 in the iteration i (N = grl_warm_iters); 'constant'.
  config.method.grl_schedule = 'dann'
  config.method.grl_gamma = 10.0
  config.method.grl_warm_alpha = 1.0
  config.method.grl_warm_iters = 1000
  config.method.grl_coeff = 1.0       # Final (or constant) gradient-reversal coefficient.
  config.method.cdan_randomized_dim = 0  # cdan(_e): >0 uses the randomized multilinear map.
  # dan, jan, residual_fusion: Gaussian kernels of bandwidth m * (mean squared distance).
  config.method.mmd_kernel_multipliers = (0.125, 0.25, 0.5, 1.0, 2.0)
  config.method.mmd_linear = False    # True: the linear-time MMD estimator.
  config.method.jan_sigma = 0.92      # jan: bandwidth of the kernel on predictions.
  config.method.mcc_temperature = 2.5  # mcc: softmax temperature.
  config.method.mdd_margin = 4.0      # mdd: gamma, the margin factor on the source disparity.
  config.method.afn_delta_r = 1.0     # afn: feature-norm increase per step.
  config.method.afn_entropy_weight = 0.0  # afn: weight of target entropy minimisation (0: off).
  config.method.shot_beta = 0.3       # shot: weight of the pseudo-label cross-entropy.
  config.method.shot_refresh_every = 0  # shot: steps between re-clusterings (0: a target epoch).
  config.method.fixmatch_threshold = 0.95  # fixmatch: confidence for a pseudo-label.
  config.method.bsp_weight = 2e-4    # bsp: weight of the spectral penalty (TLlib's default).
  config.method.bsp_k = 1             # bsp: the k largest singular values penalised, per domain.
  config.method.mcd_entropy_weight = 0.01  # mcd: weight of TLlib's class-balance term.
  config.method.mcd_num_k = 4         # mcd: generator updates (step C) per iteration.
  # Multi-phase methods (mcd, adda): (('GROUP', momentum), ...) replaces optimizer.momentum for a
  # parameter group of the method (objectives.methods.Method.param_groups).
  config.method.group_momentum = ()

  # The objective: source_weight * L_S + target_weight * ramp(p) * L_T + transfer + regularizer.
  config.objective = ml_collections.ConfigDict()
  config.objective.source_weight = 1.0    # Labelled source cross-entropy (0: not drawn).
  config.objective.target_weight = 0.0    # lambda on labelled target examples (joint objective).
  config.objective.target_weight_schedule = 'constant'  # 'constant', 'linear' or 'dann'.

  # Extra labelled tasks, each a stream of its own drawn every step (`task_config`): with
  # head '' another source domain for the main classifier (multi-source), else its own head on
  # the shared features (multi-task). Evaluate them as eval_splits 'NAME/test'.
  config.tasks = ml_collections.ConfigDict()

  # Distance regularizer towards the transferred parameters (objectives/regularizers.py).
  config.regularizer = ml_collections.ConfigDict()
  config.regularizer.name = 'none'    # 'none', 'l2', 'l2_sp', 'fisher_sp', 'delta', 'bss'.
  config.regularizer.alpha = 0.01     # Weight towards theta_S (l2_sp, fisher_sp), or the term's.
  config.regularizer.beta = 0.01      # Weight towards 0 for new parameters.
  config.regularizer.bss_k = 1        # BSS: number of smallest singular values penalised.
  config.regularizer.fisher_batches = 20  # Fisher-SP: source batches to estimate the Fisher.

  # Pretrained weights merged into the fresh initialisation (transfer/pretrained.py).
  config.init_from = ml_collections.ConfigDict()
  config.init_from.path = ''          # Workdir of an earlier run, or a .pth/.safetensors file.
  config.init_from.required = False   # True: the config transfers weights; a path is needed.
  config.init_from.step = -1          # -1: the latest checkpoint; else that step.
  config.init_from.best = False       # Load the run's best-on-validation checkpoint instead.
  config.init_from.torch_arch = ''    # For torch files: the architecture ('resnet50', ...).
  config.init_from.load = '.*'        # Regex of leaf paths to load ('params/backbone/.*').
  config.init_from.skip = ''          # Regex of paths kept fresh (a new head).
  config.init_from.rename = ()        # ('regex=>replacement', ...) on checkpoint paths.
  config.init_from.allow_missing = False  # Model leaves absent from the checkpoint stay fresh.
  config.init_from.allow_unused = False   # Checkpoint leaves the model lacks are ignored.
  config.init_from.allowed = True     # False: the config trains from scratch; a path is refused.

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'sgd'       # 'sgd', 'adam' or 'adamw'.
  config.optimizer.learning_rate = 0.01        # mu_0 of the DANN paper.
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.b1 = 0.9           # adam / adamw: the first-moment decay (optax's default).
  config.optimizer.weight_decay = 5e-4
  # 'dann_annealing': mu_0 / (1 + alpha p)^beta; 'inverse': mu_0 (1 + gamma i)^-power in the
  # iteration i (TLlib); 'constant'; 'cosine'; 'step'.
  config.optimizer.schedule = 'dann_annealing'
  config.optimizer.anneal_alpha = 10.0
  config.optimizer.anneal_beta = 0.75
  config.optimizer.inverse_gamma = 0.001
  config.optimizer.inverse_power = 0.75
  config.optimizer.step_boundaries = (0.5, 0.75)  # 'step' schedule: fractions of total_steps,
  config.optimizer.step_factor = 0.1              # where the learning rate is multiplied by this.
  config.optimizer.freeze = ''        # Regex of parameter paths that never train.
  config.optimizer.lr_multipliers = ()  # (('backbone/.*', 0.1),): per-group learning rates.
  config.optimizer.unfreeze = ()      # (('backbone/.*', 500),): frozen until that step (LP-FT).
  # sgd: (('backbone/conv.*', 0.0),): momentum per parameter (first match), else `momentum`.
  config.optimizer.momentum_overrides = ()

  config.batch_size = 64              # Per domain, global over all devices.
  config.eval_batch_size = 512
  config.total_steps = 1000
  config.log_every_steps = 100
  config.eval_every_steps = 250
  config.checkpoint_every_steps = 250
  config.keep_checkpoints = 2
  config.best_checkpoint_metric = ''  # e.g. 'source/val/accuracy': also keep the best in best/.
  config.eval_splits = ('source/test', 'target/test')
  # Log the label-free selection criteria at every evaluation (transfer_jax/selection.py: source
  # validation accuracy, target entropy, SND, IWV, DEV); needs data.source.val_fraction > 0.
  # With data.target.val_fraction > 0 the labelled target/oracle_val split is evaluated too (the
  # oracle of the selection tables: an upper bound, never a rule).
  config.selection = False
  config.selection_examples = 1000    # Examples of each set the criteria read (fixed subset).
  config.num_devices = 0              # 0: every device; n: the first n (single process only).
  # Resume on another device count than the checkpoint's: a step agrees to ~1e-7, but a whole
  # run (adversarial methods above all) may end differently, so it must be asked for.
  config.allow_device_change = False
  config.compilation_cache_dir = '~/.cache/transfer_jax/xla'
  # Multi-process runs (several hosts): leave empty to read JAX_COORDINATOR_ADDRESS,
  # JAX_NUM_PROCESSES and JAX_PROCESS_ID, or a Slurm allocation, from the environment.
  config.distributed = ml_collections.ConfigDict()
  config.distributed.coordinator_address = ''   # host:port of process 0.
  config.distributed.num_processes = 0
  config.distributed.process_id = -1
  if tiny:
    tiny_cadence(config)
  config.update_from_flattened_dict(METHOD_DEFAULTS.get(method, {}))
  return config


def tiny_cadence(config: ml_collections.ConfigDict, total_steps: int = 6, batch_size: int = 16,
                 every: int = 3) -> None:
  """A config's `tiny` mode: a few small steps, logged every 2, evaluated and checkpointed
  every `every` (seconds on a CPU; a test runs every config that way)."""
  config.total_steps, config.batch_size, config.eval_batch_size = total_steps, batch_size, 128
  config.log_every_steps = 2
  config.eval_every_steps = config.checkpoint_every_steps = every


# Settings a method brings with it when a config selects it (`:method=NAME`), from its paper
# (or its reference implementation) where the paper gives one. A config or an override wins.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    'afn': {'method.trade_off': 0.05},              # SAFN's lambda (Xu et al. 2019).
    'mdd': {'method.grl_coeff': 0.1},               # Reversal ramps to 0.1 (as in TLlib).
    # Source-free: the source model comes from init_from, its classifier stays fixed, and no
    # source batch is drawn.
    'shot': {'objective.source_weight': 0.0, 'init_from.required': True,
             'optimizer.freeze': 'classifier/.*'},
    # The paper's ADDA: the source model (encoder + classifier) comes from a source-only run
    # through init_from; the discriminator starts fresh; no source cross-entropy (the classifier
    # is in no parameter group of the method: it never moves).
    'adda': {'objective.source_weight': 0.0, 'init_from.required': True,
             'init_from.load': '(params|batch_stats)/(backbone|classifier)/.*'},
}


def model_config(backbone: str, **overrides: Any) -> ml_collections.ConfigDict:
  """`config.model`: the backbone, the heads, and how BatchNorm statistics are handled."""
  model = ml_collections.ConfigDict(dict(
      backbone=backbone,           # A key of models.BACKBONES.
      backbone_hidden=(),          # 'mlp' and growable backbones: widths of their blocks.
      backbone_batch_norm=False,   # 'mlp' and growable backbones: BatchNorm in each block.
      backbone_dropout=0.5,        # 'vgg16' backbone: dropout after its 4096-wide Dense layers.
      # Growable backbones (models/growable.py): a residual adapter of this width in each block
      # (0: none), the conv net's kernel size, and its 2x2 max-pools, one bool a block (): none).
      adapter_width=0,
      conv_kernel=3,
      conv_pools=(),
      classifier_hidden=(),        # Hidden widths of the classifier (() = linear).
      discriminator_hidden=(100,),  # Hidden widths of the domain discriminator (DANN, CDAN)
                                    # and of MDD's adversarial classifier.
      discriminator_batch_norm=False,  # BatchNorm after each of those hidden layers (TLlib).
      conv_impl='fused',           # LeNet / small_cnn conv blocks: 'fused' (fast on CPU) or 'xla'.
      # 'lenet' backbone (models/lenet.py): conv 5x5 widths, Dropout2d on the last conv maps,
      # Dense-ReLU widths after the flatten and their dropout, a bottleneck Dense (0: none)
      # with BatchNorm -> ReLU whose output is the features.
      lenet_conv=(32, 48),
      lenet_conv_padding=0,        # Zeros on each side before each conv (2: 'SAME' for 5x5).
      lenet_conv_dropout=0.0,
      lenet_dense=(),
      lenet_dense_dropout=0.0,
      bottleneck_dim=0,
      bottleneck_batch_norm=True,
      # Dropout on the bottleneck's output (after its ReLU); `bottleneck_dropout_l2`: kept
      # units scaled by 1/sqrt(1-p) instead of 1/(1-p), preserving the expected squared L2 norm
      # (SAFN's L2-preserved dropout, TLlib's AFN Block).
      bottleneck_dropout=0.0,
      bottleneck_dropout_l2=False,
      # > 0: the classifier's Dense layers (and the 'lenet' bottleneck Dense) start from
      # N(0, std) kernels and biases, the bottleneck BatchNorm scale from N(1, std) (TLlib's
      # AFN ImageClassifier: 0.01); 0: flax's default initialisers.
      head_init_std=0.0,
      fusion_hidden=(256,),        # residual_fusion: hidden widths of the residual module.
      dropout=0.0,                 # Dropout in the classifier's hidden layers.
      classifier_batch_norm=False,  # BatchNorm after each hidden Dense of the classifier.
      classifier_dropout_before=False,  # Dropout before each hidden Dense, not after (TLlib MCD).
      # BatchNorm statistics: 'train' (updated on training batches), 'frozen' (the transferred
      # statistics are kept and used while training), 'adabn' (training as 'train'; target
      # evaluation re-estimates them on unlabelled target batches, AdaBN).
      batch_norm='train',
      # Training forward passes: False, one over the concatenated batch (source, then target
      # rows: BatchNorm sees them as one batch); True, one per stream in that order, each
      # domain normalised with its own batch statistics and the running averages updated once
      # per stream (TLlib's afn.py: `model(x_s)`, then `model(x_t)`).
      per_domain_passes=False,
      adabn_batches=50,            # Target batches for AdaBN's re-estimation.
      # Computation dtype of the backbone (LeNets, ResNets, VGG): 'float32', or 'bfloat16' (mixed
      # precision: bfloat16 compute, float32 parameters, optimizer state and heads).
      dtype='float32',
  ))
  model.update(overrides)
  return model


def task_config(domain: ml_collections.ConfigDict, head: str = '',
                weight: float = 1.0) -> ml_collections.ConfigDict:
  """An entry of `config.tasks`: a labelled domain, the head that classifies it ('' = the main
  classifier; a name = a head of its own), and the weight of its cross-entropy."""
  return ml_collections.ConfigDict(dict(domain=domain, head=head, weight=weight))


def domain_config(name: str, **overrides: Any) -> ml_collections.ConfigDict:
  """A domain entry of `config.data` (see `transfer_jax.data.sources` for each field)."""
  domain = ml_collections.ConfigDict(dict(
      name=name,               # A dataset of data.builders.DATASETS, 'npz:PATH' or registered.
      train_split='train',     # Stored split trained on.
      test_split='test',       # Stored split reported on; 'holdout': test_fraction of train.
      train_size=0,            # >0: fixed random subset of train_split (ADDA: 2000 / 1800).
      val_fraction=0.0,        # Held out of train: 'val' (source) / 'oracle_val' (target).
      labeled_per_class=0,     # k labelled examples per class ('labeled'); -1: all of train.
      box_size=0,              # >0: resize into box x box centred in image_size (MNIST framing).
      # True: every pixel > 0 becomes 255 before resizing, a binary digit (tf-dann's MNIST,
      # pumpikano/tf-dann MNIST-DANN.ipynb: `(images > 0) * 255`; MNIST-M blends such digits).
      binarize=False,
  ))
  domain.update(overrides)
  return domain


def data_config(source: ml_collections.ConfigDict, target: ml_collections.ConfigDict,
                **overrides: Any) -> ml_collections.ConfigDict:
  """`config.data`: the two domains and the preprocessing they share."""
  data = ml_collections.ConfigDict(dict(
      source=source, target=target,
      image_size=28,           # Common square size (0: keep the stored size).
      channels=1,              # 1 or 3: grey <-> RGB conversion where a domain differs.
      # 'unit': [0, 1]; 'symmetric': (x - 0.5) / 0.5 in [-1, 1] (TLlib's digits);
      # 'standardize': per-channel train statistics; 'center': minus the per-channel mean of
      # the source and target training images together (the DANN paper's mean subtraction).
      normalize='unit',
      in_memory=True,          # Read the splits into memory (small data); False streams them.
      test_fraction=0.2,       # For test_split='holdout'.
      split_seed=0,            # Fixes every protocol draw, independent of config.seed.
      data_dir='~/tensorflow_datasets',  # Where prepared array_record files go.
      # Raw files for the builders (TFDS's manual-download folder).
      manual_dir=os.environ.get('TRANSFER_JAX_MANUAL_DIR',
                                '~/tensorflow_datasets/downloads/manual'),
  ))
  data.update(overrides)
  return data


# Config fields added after runs may have been saved, with the value that reproduces what runs
# without them did (JSON-typed, as config.json holds it): a saved config lacking one of them
# matches that value (training/workdir.check_config), and loading it (`saved_config`) sets it,
# so upgrading the library keeps finished runs readable and interrupted ones resumable. Each is
# the field's default above (tests/test_config.py checks it).
ADDED_KEYS: dict[str, Any] = {
    'tasks': {}, 'selection': False, 'selection_examples': 1000, 'allow_device_change': False,
    'compilation_cache_dir': '~/.cache/transfer_jax/xla',   # A runtime key: no number depends.
    'distributed.coordinator_address': '', 'distributed.num_processes': 0,
    'distributed.process_id': -1, 'init_from.required': False,
    'method.trade_off_schedule': 'constant', 'method.cdan_randomized_dim': 0,
    'method.mmd_kernel_multipliers': [0.125, 0.25, 0.5, 1.0, 2.0], 'method.mmd_linear': False,
    'method.jan_sigma': 0.92, 'method.mcc_temperature': 2.5, 'method.mdd_margin': 4.0,
    'method.afn_delta_r': 1.0, 'method.shot_beta': 0.3, 'method.shot_refresh_every': 0,
    'method.fixmatch_threshold': 0.95, 'model.fusion_hidden': [256], 'model.dtype': 'float32',
    'model.batch_norm': 'train', 'model.conv_impl': 'fused', 'model.dropout': 0.0,
    'model.classifier_batch_norm': False, 'model.classifier_dropout_before': False,
    'model.backbone_batch_norm': False, 'model.backbone_dropout': 0.5, 'model.adapter_width': 0,
    'model.conv_kernel': 3, 'model.conv_pools': [], 'optimizer.b1': 0.9,
    'method.afn_entropy_weight': 0.0, 'model.bottleneck_dropout': 0.0,
    'model.bottleneck_dropout_l2': False, 'optimizer.momentum_overrides': [],
    'model.per_domain_passes': False, 'model.head_init_std': 0.0, 'model.lenet_conv_padding': 0,
}
# The same for fields of domain_config, in every domain a saved config holds (data.source,
# data.target and each tasks.NAME.domain).
ADDED_DOMAIN_KEYS: dict[str, Any] = {'binarize': False}


def with_added_keys(saved: dict[str, Any]) -> dict[str, Any]:
  """A copy of a saved config dict (config.json) with each missing ADDED_KEYS field set."""
  out = copy.deepcopy(saved)
  for dotted, value in ADDED_KEYS.items():
    *parents, leaf = dotted.split('.')
    node = out
    for parent in parents:
      node = node.setdefault(parent, {})
      if not isinstance(node, dict):
        break
    else:
      node.setdefault(leaf, copy.deepcopy(value))
  data = out['data'] if isinstance(out.get('data'), dict) else {}
  tasks = out['tasks'] if isinstance(out.get('tasks'), dict) else {}
  domains = [data[role] for role in ('source', 'target') if role in data]
  domains += [task['domain'] for task in tasks.values()
              if isinstance(task, dict) and 'domain' in task]
  for domain in filter(lambda d: isinstance(d, dict), domains):
    for key, value in ADDED_DOMAIN_KEYS.items():
      domain.setdefault(key, copy.deepcopy(value))
  return out
