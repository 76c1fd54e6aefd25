"""TensorBoard's HParams tab: the run's config as hparams plugin data, written without
TensorFlow."""

import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from transfer_jax.training.writers import EventFileWriter


def test_hparams_are_written_for_the_hparams_plugin(tmp_path):
  writer = EventFileWriter(str(tmp_path))
  writer.write_hparams({'seed': 3, 'method': {'name': 'dann', 'trade_off': 0.3},
                        'optimizer': {'lr_multipliers': [['backbone/.*', 0.1]], 'nesterov': True},
                        'tasks': {}})
  writer.write_scalars(10, {'target/test/accuracy': 0.5})
  writer.close()
  events = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={'tensors': 0})
  events.Reload()
  content = events.PluginTagToContent('hparams')
  assert list(content) == ['_hparams_/session_start_info']
  start = plugin_data_pb2.HParamsPluginData.FromString(
      content['_hparams_/session_start_info']).session_start_info
  hparams = {key: value.WhichOneof('kind') and getattr(value, value.WhichOneof('kind'))
             for key, value in start.hparams.items()}
  assert hparams == {'seed': 3.0, 'method.name': 'dann', 'method.trade_off': 0.3,
                     'optimizer.lr_multipliers': '[["backbone/.*", 0.1]]',
                     'optimizer.nesterov': True, 'tasks': '{}'}
  assert 'tensorflow' not in sys.modules
