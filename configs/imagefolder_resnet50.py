"""Fine-tune an ImageNet-pretrained ResNet-50 on an image folder (Office-31, Office-Home, your own).

The images are `ROOT/DOMAIN/CLASS/*.jpg` (name the domain `folder:ROOT/DOMAIN` or, for the known
datasets, e.g. `office31/amazon` with `data.manual_dir`); 10% of the training images are held out
for validation, the learning rate drops x0.1 at 50% and 75% of the steps, and the best checkpoint
on the held-out images is kept in WORKDIR/best. Pretrained weights: torchvision's ResNet-50
state dict, converted on load (`init_from.torch_arch=resnet50`; .pth through
torch.load(weights_only=True) or .safetensors); its 1000-way `fc` layer is replaced.

  python -m transfer_jax.main --config=configs/imagefolder_resnet50.py \\
      --workdir=runs/photos_r50 --config.data.target.name=folder:/data/photos/site_a \\
      --config.init_from.path=resnet50-0676ba61.pth
Arguments: tiny (a ResNet-18 on 32x32 images for a few steps, from scratch: no download).

Expected: not measured here. ImageNet weights and Office images cannot be downloaded on the
machines this project is developed on; the tiny mode is tested on an image folder a test writes,
and the ResNet-50 conversion is tested against the same torch model (tests/test_torch_import.py).
"""

import ml_collections

from transfer_jax.config_lib import base_config, data_config, domain_config, model_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, tiny=False)
  config = base_config('source_only', arg.tiny)
  # Plain fine-tuning: the target's own labels train; there is no source domain to load.
  folder = domain_config('', labeled_per_class=-1, val_fraction=0.1, test_split='holdout')
  config.data = data_config(domain_config(''), folder, image_size=224, channels=3,
                            normalize='standardize', in_memory=False, test_fraction=0.2)
  config.objective.source_weight = 0.0
  config.objective.target_weight = 1.0
  config.eval_splits = ('target/oracle_val', 'target/test')
  config.best_checkpoint_metric = 'target/oracle_val/accuracy'  # Held-out training images.

  # torchvision ResNet-50 (v1.5), ImageNet stem; a new linear layer on its 2048-d features.
  config.model = model_config('resnet50', discriminator_hidden=())

  config.init_from.required = True
  config.init_from.torch_arch = 'resnet50'
  config.init_from.skip = 'params/classifier/out/.*'  # torchvision's fc: a new label set.
  config.init_from.allow_unused = True
  config.optimizer.learning_rate = 0.01
  config.optimizer.schedule = 'step'
  config.optimizer.lr_multipliers = (('backbone/.*', 0.1),)  # Pretrained layers learn slower.
  config.batch_size = 32
  config.eval_batch_size = 64
  config.total_steps = 5000
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  if arg.tiny:
    config.data.image_size = 32
    config.model.backbone = 'resnet18'
    config.init_from.required = False         # Tiny mode trains from scratch, offline.
    config.init_from.torch_arch = ''
    config.optimizer.lr_multipliers = ()
    config.total_steps = 4
    config.batch_size = 8
    config.eval_batch_size = 16
    config.eval_every_steps = 2
    config.checkpoint_every_steps = 2
  return config
