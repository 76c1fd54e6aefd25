"""Metric output: CLU metric writers (log + TensorBoard), `metrics.jsonl`, and a progress line.

clu 0.0.12 imports TensorFlow in `clu.metric_writers.summary_writer` only to write TensorBoard
event files. This project has no TensorFlow dependency, so when TensorFlow is absent we register
`EventFileWriter` below under that module name before importing CLU: it writes the same event
files through the `tensorboard` package, and the rest of CLU (LoggingWriter, MultiWriter,
AsyncMultiWriter, create_default_writer) works unchanged.
"""

import importlib.util
import json
import os
import sys
import time
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

from transfer_jax.training import workdir as workdir_lib


class EventFileWriter:
  """A TensorFlow-free CLU `MetricWriter` for TensorBoard scalars, texts and hyperparameters
  (HParams plugin)."""

  def __init__(self, logdir: str):
    from tensorboard.summary.writer.event_file_writer import EventFileWriter as _Writer
    self._writer = _Writer(os.fspath(logdir))

  def _add(self, step: int, values: list) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    summary = summary_pb2.Summary(value=values)
    self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    from tensorboard.compat.proto import summary_pb2
    self._add(step, [summary_pb2.Summary.Value(tag=k, simple_value=float(v))
                     for k, v in scalars.items()])

  def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
    from tensorboard.compat.proto import summary_pb2, tensor_pb2, types_pb2
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name='text'))
    self._add(step, [summary_pb2.Summary.Value(
        tag=k, metadata=metadata,
        tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[v.encode()]))
        for k, v in texts.items()])

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """The HParams tab (the tensorboard package's hparams summary, no TensorFlow needed) with
    the flattened config ('optimizer.learning_rate'), and the whole config as a JSON text."""
    from tensorboard.plugins.hparams import summary_v2
    flat = {key: value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
            for key, value in _flatten(hparams).items()}
    self._writer.add_event(event_pb2_event(summary_v2.hparams_pb(flat)))
    self.write_texts(0, {'hparams': json.dumps(dict(hparams), indent=1, default=str)})

  def _unsupported(self, *args, **kwargs):
    raise NotImplementedError('the TensorFlow-free TensorBoard writer records scalars, texts and '
                              'hparams; install tensorflow for images, audio and histograms')

  write_images = write_videos = write_audios = write_histograms = write_pointcloud = _unsupported

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


def event_pb2_event(summary: Any, step: int = 0) -> Any:
  """A TensorBoard event holding `summary` (a summary_pb2.Summary)."""
  from tensorboard.compat.proto import event_pb2
  return event_pb2.Event(wall_time=time.time(), step=step, summary=summary)


def _flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping) and value:
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _install_tf_free_summary_writer() -> None:
  name = 'clu.metric_writers.summary_writer'
  if name in sys.modules or importlib.util.find_spec('tensorflow') is not None:
    return
  module = types.ModuleType(name)
  module.SummaryWriter = EventFileWriter
  sys.modules[name] = module


_install_tf_free_summary_writer()
from clu import metric_writers  # noqa: E402  (must follow the registration above)

metric_writers.interface.MetricWriter.register(EventFileWriter)


def create_writer(workdir: str, is_main_process: bool) -> metric_writers.MetricWriter:
  """Log lines on every process; TensorBoard events in `workdir` on the main process only."""
  return metric_writers.create_default_writer(workdir, just_logging=not is_main_process,
                                              asynchronous=False)


class MetricsLog:
  """`metrics.jsonl`: one JSON object per log or eval event, with `step` and `wall_s`."""

  def __init__(self, path: str):
    self.path = path

  def write(self, step: int, wall_s: float, metrics: Mapping[str, float]) -> None:
    record = {'step': int(step), 'wall_s': round(float(wall_s), 3), **_plain(metrics)}
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')

  def truncate_after(self, step: int) -> None:
    """Drops events after `step` (and a partial last line a kill may leave): a resumed run
    recomputes and rewrites them identically, so that each step is in the file once."""
    if not os.path.exists(self.path):
      return
    kept = [line if line.endswith('\n') else line + '\n'
            for line in workdir_lib.metrics_lines(self.path) if json.loads(line)['step'] <= step]
    tmp = f'{self.path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
      f.writelines(kept)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, self.path)

  def read(self) -> list[dict[str, Any]]:
    """The records written so far (parsed as `workdir.read_metrics` parses them)."""
    return [json.loads(line) for line in workdir_lib.metrics_lines(self.path)]


def truncate_events(workdir: str, step: int | None) -> None:
  """Rewrites the TensorBoard event files of `workdir` without the events after `step` (all of
  them when `step` is None: the run starts again from its beginning), so that a resumed run
  holds each step once. Each file is rewritten through a temporary file and a rename."""
  from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
  from tensorboard.compat.proto import event_pb2
  from tensorboard.summary.writer.record_writer import RecordWriter

  for name in sorted(os.listdir(workdir)):
    if not name.startswith('events.out.tfevents.') or '.tmp' in name:
      continue
    path = os.path.join(workdir, name)
    if step is None:
      os.remove(path)
      continue
    kept, dropped = [], 0
    try:
      for raw in RawEventFileLoader(path).Load():
        event = event_pb2.Event.FromString(raw)
        if event.step <= step or event.HasField('file_version'):
          kept.append(raw)
        else:
          dropped += 1
    except Exception:  # noqa: BLE001 (a record cut by a kill ends the readable part)
      dropped += 1
    if not dropped:
      continue
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'wb') as f:
      writer = RecordWriter(f)
      for raw in kept:
        writer.write(raw)
      writer.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)


class Progress:
  """A progress bar with rate, ETA and the latest metrics on a terminal; plain lines otherwise."""

  def __init__(self, total_steps: int, first_step: int, stream=None):
    self.total, self.first = total_steps, first_step
    self.stream = stream or sys.stderr
    self.tty = self.stream.isatty()
    self.start = time.perf_counter()
    self.summary = ''

  def update(self, step: int, metrics: Mapping[str, float] | None = None) -> None:
    if metrics is not None:
      self.summary = '  '.join(f'{k.split("/", 1)[-1] if k.startswith("source/train") else k}='
                               f'{v:.4g}' for k, v in metrics.items() if _shown(k))
    elif not self.tty:
      return
    elapsed = time.perf_counter() - self.start
    rate = (step - self.first) / elapsed if elapsed > 0 else 0.0
    eta = (self.total - step) / rate if rate > 0 else float('nan')
    eta_text = time.strftime('%H:%M:%S', time.gmtime(eta)) if np.isfinite(eta) else '--:--:--'
    done = step / self.total
    bar = '#' * int(24 * done) + '.' * (24 - int(24 * done))
    line = f'[{bar}] {step}/{self.total} {rate:.1f} steps/s ETA {eta_text}'
    if self.tty:  # Elsewhere CLU's LoggingWriter prints the metrics on their own lines.
      line += '  ' + self.summary
    if self.tty:
      self.stream.write('\r' + line[:200].ljust(120))
      if step >= self.total:
        self.stream.write('\n')
    else:
      self.stream.write(line + '\n')
    self.stream.flush()


def _shown(key: str) -> bool:
  return key in ('source/train/loss', 'source/train/accuracy', 'target/test/accuracy',
                 'source/test/accuracy', 'dann/domain_accuracy')


def _plain(metrics: Mapping[str, Any]) -> dict[str, Any]:
  return {k: (float(v) if np.ndim(v) == 0 else np.asarray(v).tolist()) for k, v in metrics.items()}
