"""MNIST <-> USPS at TLlib's protocol: its digits LeNet, its recipe, its iteration count.

Every fact is read from TLlib's source (thuml/Transfer-Learning-Library, read for facts only):
  network   tllib/vision/models/digits.py LeNet (as quoted in issue 13): conv 5x5 1->20 ->
            max-pool 2 -> ReLU -> conv 5x5 20->50 -> Dropout2d(0.5) -> max-pool 2 -> ReLU ->
            flatten (800) -> Linear 500 -> ReLU -> Dropout(0.5); `--no-pool` (no pooling after
            it). tllib/alignment/dann.py ImageClassifier: bottleneck Linear 256 -> BatchNorm1d ->
            ReLU (the features), head Linear 10. tllib/modules/domain_discriminator.py
            DomainDiscriminator(256, hidden_size=1024): Linear -> BatchNorm1d -> ReLU, twice,
            -> Linear 1 -> sigmoid.
  GRL       tllib/modules/grl.py WarmStartGradientReverseLayer(alpha=1, lo=0, hi=1,
            max_iters=1000): coefficient 2/(1+exp(-i/1000))-1 in the iteration i
            (method.grl_schedule='warm_start').
  optimizer examples/domain_adaptation/image_classification/dann.py: SGD momentum 0.9,
            Nesterov, weight decay 1e-3, lr * (1 + 0.001 i)^-0.75 (LambdaLR over parameter groups
            of lr 1.0: `--scratch` gives the backbone 1.0 too); trade-off 1.
  commands  dann.sh (and the other *.sh) '# Digits': `-a lenet --no-pool --lr 0.01` (M->U),
            `--lr 0.1` (U->M), `-b 128 -i 2500 --scratch`, epochs 20 (the default): 50k
            iterations; `--resize-size 28 --no-hflip --norm-mean 0.5 --norm-std 0.5`: grey 28x28,
            USPS resized to 28, (x - 0.5) / 0.5, no augmentation. mdd.sh uses lr 0.01 both ways.
  selection TLlib validates on the target test split after every epoch (2500 iterations) and
            reports the best epoch: the `target_test` rule of the report, optimistic.
  source-only  source_only.py: `Classifier` without a bottleneck (head Linear 500 -> 10),
            weight decay 5e-4, lr_gamma 3e-4 (its defaults; source_only.sh overrides neither).
  bsp       bsp.py: DANN's network, optimizer and loss plus `--trade-off-bsp` times the BSP
            penalty; bsp.sh '# Digits': `--trade-off-bsp 0.0001`, lr 0.01 / 0.1 as DANN;
            tllib/alignment/bsp.py BatchSpectralPenalizationLoss: s_s[0]^2 + s_t[0]^2 (k = 1).
            Not reproduced: bsp.py first pretrains on source (`--pretrain-epochs 3` of 2500
            iterations at `--pretrain-lr 0.001`, its defaults) and starts DANN+BSP from that;
            here BSP starts from scratch like DANN.
  mcd       mcd.py + tllib/alignment/mcd.py (METHOD_SETTINGS['mcd']): G the LeNet without
            bottleneck, two heads F1, F2 (Dropout, Linear 1024, BatchNorm, ReLU, twice, Linear
            10); per iteration step A (G, F1, F2: both source cross-entropies + 0.03 x TLlib's
            class-balance 'entropy' on target), step B (F1, F2 only: the same minus 0.3 x the
            discrepancy mean |p1 - p2| on target), step C x 4 (G only: 0.3 x the discrepancy);
            optimizer_g SGD without momentum, optimizer_f SGD momentum 0.9, both weight decay
            5e-4, constant lr 0.01 / 0.1 (mcd.sh). We report F1's accuracy (TLlib reports the
            better of F1 and F2); F2's BatchNorm running statistics are not kept.
  afn       afn.py + tllib/alignment/afn.py (METHOD_SETTINGS['afn'], REVERSE_SETTINGS): the
            LeNet, then its AFN Block as bottleneck: Linear 1000 -> BatchNorm -> ReLU ->
            Dropout(0.5) with L2-preserved scaling (x 1/sqrt(1-p)), whose output is the
            feature the norm loss reads; SGD(lr, weight_decay 5e-4), momentum 0.9 on the
            bottleneck and head groups only (get_parameters), constant lr; loss cls + 0.05 x
            (source norm loss + target norm loss) + 0.03 x target entropy; source and target
            through the network in two passes (BatchNorm statistics per domain, afn.py's
            train()); bottleneck and head initialised N(0, 0.01), the BatchNorm scale
            N(1, 0.01) (tllib/alignment/afn.py ImageClassifier); afn.sh '# Digits':
            M->U `-r 0.3 --lr 0.01`, U->M `-r 0.1 --lr 0.03`. (In one concatenated pass with
            flax's initialisers, commit a6edf54: 81.2 / 54.9 at the last step, U->M below
            source-only; commit 09dd4d0, DANN's recipe with SAFN's defaults r = 1 on the 256-d
            bottleneck: 83.7 / 79.0 target_test.)
  adda      the paper's ADDA (Tzeng et al. 2017), not TLlib's: adda.py (its issues #172, #179)
            pretrains on source, copies the network for the target and trains it with DANN's
            loss through a gradient reversal layer (WarmStartGradientReverseLayer hi=2), one
            optimizer for target network and discriminator. Ours follows the authors' code
            (erictzeng/adda, tools/train_adda.py, adda/adversary.py, scripts/svhn-mnist.sh; the
            same commands for MNIST <-> USPS): the source model comes from a separate
            source-only run (TLlib's network with bottleneck 256; `tools/train.py ... --solver
            adam --lr 0.001 --iterations 10000 --batch_size 128`, the 2.5e-5 L2 of its layers
            as weight decay; experiments/t1_mnist_usps_tllib.py ADDA_PRETRAIN) loaded with
            --config.init_from.path; per iteration the discriminator steps on the source model's
            source features against the target encoder's target features, then the target
            encoder steps on the inverted-label GAN loss; source model and classifier frozen.
            Optimizer `--solver adam --lr 0.0002`: Adam(lr, beta1 0.5), constant, no weight
            decay (the adversarial losses carry no regularizer), 128 per domain; the
            discriminator `--adversary_relu`, adversary_layers 500, 500: Dense 500 -> ReLU ->
            Dense 500 -> ReLU -> 1 (no BatchNorm). With TLlib's SGD at lr 0.01 the target
            encoder collapsed within 250 iterations (M->U target 7.5 %, 19.8 % after 2000, from
            a source model at 77.6 %); with the authors' Adam it reached 91.5 % at 250.
            Departures from the authors' code: their discriminator reads the 10 logits and
            their target network includes the last layer; here it reads the 256-d features and
            the classifier stays the source model's (the paper's text). The target encoder's
            BatchNorm sees source and target rows in one batch (the one forward pass of the
            step), as DANN's does.

Differences from TLlib: 10 % of the source training data is held out as source validation and
10 % of the target training data as the labelled oracle split (the selection rules need them);
our data order is a function of the step (shuffled epochs), TLlib's a fresh DataLoader shuffle.

  python -m transfer_jax.main --config=configs/mnist_usps_tllib.py:method=dann \\
      --workdir=runs/m2u_tllib_dann --config.data.manual_dir=../shared/datasets
Arguments: method (any name of objectives.METHODS), reverse (USPS -> MNIST), tiny.
The table: experiments/t1_mnist_usps_tllib.py (a sweep file + report). Expected (seed 0, 10k
iterations, target test %, M->U / U->M, last step): source_only 80.4 / 79.9, dann 91.9 / 95.4,
cdan 94.3 / 97.8, mcc 94.0 / 94.0 (experiments/t1_mnist_usps_tllib.md); adda 95.2 / 98.7,
bsp 94.2 / 98.0, mdd 94.2 / 97.6, dan 86.5 / 89.2 (commit 213bac7); jan 83.5 / 92.7,
target_supervised 96.5 / 99.4 (commit 79d1bd0); afn 82.0 / 92.7 (commit 762257b); mcd
85.8 / 96.9 (commit b1e46d5; experiments/records/t1_mnist_usps_tllib). Seeds 1-2 (commit
a6edf54, records, last step):
source_only 81.1 +- 0.4 / 79.5 +- 1.4, dann 91.5 +- 0.6 / 95.8 +- 0.1, cdan M->U 94.5 +- 0.2.
"""

import ml_collections

from transfer_jax.config_lib import (
  base_config,
  data_config,
  domain_config,
  model_config,
  parse_arg,
  tiny_cadence,
)

# Per-method settings read from TLlib's scripts (a config override still wins).
METHOD_SETTINGS = {
    # source_only.py: no bottleneck, its own weight decay and lr_gamma defaults.
    'source_only': {'model.bottleneck_dim': 0, 'optimizer.weight_decay': 5e-4,
                    'optimizer.inverse_gamma': 3e-4},
    # dan.py: MultipleKernelMaximumMeanDiscrepancy(GaussianKernel(alpha=2**k), k = -3..1,
    # linear=not args.non_linear): the linear-time estimator by default.
    'dan': {'method.mmd_linear': True},
    # bsp.py + bsp.sh '# Digits': DANN's network and recipe, `--trade-off-bsp 0.0001`;
    # tllib/alignment/bsp.py: k = 1 (the largest singular value of each domain).
    'bsp': {'method.bsp_weight': 1e-4, 'method.bsp_k': 1},
    # afn.py + tllib/alignment/afn.py ImageClassifier: bottleneck Block Linear 500 -> 1000 ->
    # BatchNorm -> ReLU -> Dropout(0.5) with L2-preserved scaling (num_blocks 1, bottleneck_dim
    # 1000, dropout_p 0.5 defaults), the block's output the features; `SGD(get_parameters(),
    # lr, weight_decay=5e-4)` without momentum except the bottleneck's and head's groups
    # (momentum 0.9), no scheduler ('fixed according to origin paper'); loss cls +
    # trade_off_norm 0.05 x (norm loss of source + norm loss of target, each a mean: the
    # paper's mean over both domains x 2, hence trade_off 0.1 here) + trade-off-entropy 0.03 x
    # mean target entropy; afn.sh '# Digits': M->U `-r 0.3 --lr 0.01`, U->M `-r 0.1 --lr 0.03`
    # (REVERSE_SETTINGS). afn.py's train() runs `model(x_s)` and `model(x_t)`, two passes
    # (every other TLlib method one pass over torch.cat((x_s, x_t))): each domain normalised
    # by the bottleneck BatchNorm with its own batch statistics (model.per_domain_passes).
    # ImageClassifier.__init__: bottleneck and head Linear weights and biases N(0, 0.01), the
    # bottleneck BatchNorm weight N(1, 0.01) (model.head_init_std).
    'afn': {'model.bottleneck_dim': 1000, 'model.bottleneck_dropout': 0.5,
            'model.per_domain_passes': True, 'model.head_init_std': 0.01,
            'model.bottleneck_dropout_l2': True, 'optimizer.schedule': 'constant',
            'optimizer.nesterov': False, 'optimizer.momentum': 0.9,
            'optimizer.momentum_overrides': (('backbone/(conv|fc).*', 0.0),),
            'optimizer.weight_decay': 5e-4, 'method.trade_off': 0.1,
            'method.afn_entropy_weight': 0.03, 'method.afn_delta_r': 0.3},
    # mcd.py: G = the LeNet without bottleneck (500-d); F1, F2 = tllib/alignment/mcd.py
    # ImageClassifierHead(bottleneck_dim=1024, the default): Dropout 0.5 -> Linear 1024 ->
    # BatchNorm -> ReLU -> Dropout 0.5 -> Linear 1024 -> BatchNorm -> ReLU -> Linear 10;
    # optimizer_g SGD(lr, weight_decay 5e-4) without momentum, optimizer_f SGD(lr, momentum 0.9,
    # weight_decay 5e-4), no scheduler ('the learning rate is fixed according to origin paper');
    # mcd.sh '# Digits': `--trade-off 0.3 --trade-off-entropy 0.03`, lr 0.01 / 0.1, num_k 4 (its
    # default).
    'mcd': {'model.bottleneck_dim': 0, 'model.classifier_hidden': (1024, 1024),
            'model.dropout': 0.5, 'model.classifier_batch_norm': True,
            'model.classifier_dropout_before': True, 'optimizer.schedule': 'constant',
            'optimizer.nesterov': False, 'optimizer.momentum': 0.9,
            'optimizer.weight_decay': 5e-4, 'method.group_momentum': (('generator', 0.0),),
            'method.trade_off': 0.3, 'method.mcd_entropy_weight': 0.03, 'method.mcd_num_k': 4},
    # The paper's ADDA as the authors' code runs it (erictzeng/adda tools/train_adda.py with
    # `--solver adam --lr 0.0002 --adversary_relu`): Adam(2e-4, beta1 0.5), constant, no
    # weight decay; discriminator 500 -> 500 (ReLU), no BatchNorm. The source model comes from
    # a pretraining run (through init_from.path; see the docstring).
    'adda': {'optimizer.name': 'adam', 'optimizer.learning_rate': 2e-4, 'optimizer.b1': 0.5,
             'optimizer.schedule': 'constant', 'optimizer.weight_decay': 0.0,
             'model.discriminator_hidden': (500, 500), 'model.discriminator_batch_norm': False},
    # mdd.py + tllib/alignment/mdd.py ImageClassifier: bottleneck 1024 (BatchNorm, ReLU), head
    # and adversarial head Linear 1024 -> ReLU -> Dropout 0.5 -> Linear 10, margin 4, the GRL
    # warm start to 0.1 (config_lib.METHOD_DEFAULTS); lr 0.01 both ways (mdd.sh), lr_gamma 2e-4,
    # weight decay 5e-4 (its defaults). Not reproduced: the bottleneck's Dropout(0.5), the
    # adversarial head's dropout and TLlib's N(0, 0.005) / N(0, 0.01) initialisations.
    'mdd': {'model.bottleneck_dim': 1024, 'model.classifier_hidden': (1024,),
            'model.dropout': 0.5, 'model.discriminator_hidden': (1024,),
            'model.discriminator_batch_norm': False, 'optimizer.learning_rate': 0.01,
            'optimizer.weight_decay': 5e-4, 'optimizer.inverse_gamma': 2e-4},
}

# U->M settings of a method that differ from its M->U ones (TLlib's *.sh '# Digits').
REVERSE_SETTINGS = {
    'afn': {'optimizer.learning_rate': 0.03, 'method.afn_delta_r': 0.1},
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, method='dann', reverse=False, tiny=False)
  config = base_config(arg.method, arg.tiny)
  mnist, usps = domain_config('mnist'), domain_config('usps')
  source, target = (usps, mnist) if arg.reverse else (mnist, usps)
  config.data = data_config(source, target, image_size=28, channels=1, normalize='symmetric')
  config.model = model_config('lenet', lenet_conv=(20, 50), lenet_conv_dropout=0.5,
                              lenet_dense=(500,), lenet_dense_dropout=0.5, bottleneck_dim=256,
                              bottleneck_batch_norm=True, discriminator_hidden=(1024, 1024),
                              discriminator_batch_norm=True)

  config.optimizer.learning_rate = 0.1 if arg.reverse else 0.01
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 1e-3
  config.optimizer.schedule = 'inverse'
  config.optimizer.inverse_gamma = 0.001
  config.optimizer.inverse_power = 0.75
  config.method.grl_schedule = 'warm_start'
  config.method.grl_warm_alpha = 1.0
  config.method.grl_warm_iters = 1000

  config.batch_size = 128
  config.total_steps = 50_000       # 20 epochs of 2500 iterations.
  config.log_every_steps = 500
  config.eval_every_steps = 2500    # TLlib's epoch.
  config.checkpoint_every_steps = 2500
  config.eval_batch_size = 1000
  config.update_from_flattened_dict(METHOD_SETTINGS.get(arg.method, {}))
  if arg.reverse:
    config.update_from_flattened_dict(REVERSE_SETTINGS.get(arg.method, {}))
  if arg.tiny:
    tiny_cadence(config)
    config.model.lenet_dense = (32,)
    config.model.bottleneck_dim = 16 if config.model.bottleneck_dim else 0
    config.model.discriminator_hidden = (16, 16)
    config.model.classifier_hidden = tuple(16 for _ in config.model.classifier_hidden)
  return config
