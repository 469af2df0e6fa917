"""The one training loop. A task says what a step computes; the loop owns the rest.

    summary = train_and_evaluate(config, workdir, ClassificationTask)

Steps are jitted once, with the train state donated, data parallel over a 1-D mesh of every
device of every process. On an accelerator, `config.train.log_every` steps run inside one call
(`lax.scan`), gathering and augmenting their batches on the device: small models are otherwise
bound by dispatch. On a CPU each step is its own call (`train.scan_steps="auto"`), since
XLA:CPU runs convolutions inside a loop several times slower (LeNet-5 at batch 128: 3.7x).
Either way metrics stay on the device until the logging steps. Each step's rng is `fold_in(seed, step)`
and its batch a function of (seed, step), so running the same command again after a crash
resumes from the last checkpoint and ends with the parameters of an uninterrupted run.

config.train: steps, batch_size, log_every, eval_every, checkpoint_every, seed, eval_batch_size,
  early_stopping.{metric, mode, patience, min_delta, restore_best}, best_metric, best_mode, visuals_every

Early stopping keeps the model it stopped for: with `early_stopping.metric` set, the best
checkpoint is chosen by that metric (unless `best_metric` names another), and the run ends on the
best evaluation's parameters and metrics, not on the last ones (`restore_best`, default on).
A metric name that no evaluation reports is refused before the first step.

Evaluation sums each metric's (sum, count) pairs over a split on the devices (`Task.eval_step`);
a metric of the whole split that is not a mean (mAP) is scored on the host from every example's
`Task.eval_outputs`, gathered over the split without the padding rows (`split_outputs`), by
`Task.evaluate_outputs`. Both land in the same "<split>/<metric>" records.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vision_jax import plotting
from vision_jax.data.augment import make_preprocess
from vision_jax.data.pipeline import eval_batches, get_splits, make_train_data
from vision_jax.errors import ConfigError, RunError
from vision_jax.tasks.base import Task
from vision_jax.train import mesh as mesh_lib
from vision_jax.train.checkpoint import CheckpointStore, load_variables, restore_variables
from vision_jax.train.metric_writers import MetricWriter, Progress, read_metrics


class NonFiniteLossError(RunError, FloatingPointError):
  """The training loss became NaN or infinite."""


@dataclasses.dataclass
class EarlyStopping:
  """Stops when `metric` has not improved by `min_delta` for `patience` evaluations."""

  metric: str = ""
  mode: str = "min"
  patience: int = 0
  min_delta: float = 0.0
  best: float | None = None
  bad_evals: int = 0
  stopped: bool = False

  def update(self, value: float) -> bool:
    """Records one evaluation; returns True when training should stop."""
    better = self.best is None or (
      value < self.best - self.min_delta
      if self.mode == "min"
      else value > self.best + self.min_delta
    )
    if better:
      self.best, self.bad_evals = value, 0
    else:
      self.bad_evals += 1
    self.stopped = bool(self.patience) and self.bad_evals >= self.patience
    return self.stopped

  def to_json(self) -> dict:
    return {"best": self.best, "bad_evals": self.bad_evals, "stopped": self.stopped}


def _is_better(value: float, best: float | None, mode: str) -> bool:
  return best is None or (value < best if mode == "min" else value > best)


def _boundaries(step: int, total: int, every: list[int]) -> int:
  """The next step after `step` at which the host must act (log, eval, checkpoint, end)."""
  nxt = total
  for e in every:
    if e > 0:
      nxt = min(nxt, (step // e + 1) * e)
  return nxt


def make_train_chunk(
  task: Task,
  train_fn: Callable,
  get_batch: Callable,
  rng: jax.Array,
  state_sharding: Any,
  metrics_sharding: Any,
) -> Callable:
  """The jitted training call: `chunk(state, data, xs) -> (state, metrics stacked over steps)`.

  One scan step per element of `xs`: its batch is `train_fn(get_batch(data, x), aug_rng)` and
  its rngs come from `fold_in(rng, state.step)`; a single element runs without the scan. The
  state is donated. `scripts/bench.py` times this same function.
  """

  def train_chunk(state, data, xs):
    def body(state, x):
      step_rng = jax.random.fold_in(rng, state.step)
      aug_rng, task_rng = jax.random.split(step_rng)
      batch = train_fn(get_batch(data, x), aug_rng)
      state, metrics = task.train_step(state, batch, task_rng)
      return state.replace(step=state.step + 1), metrics

    if jax.tree.leaves(xs)[0].shape[0] == 1:
      # One step: no loop around it, which XLA:CPU would run several times slower.
      state, metrics = body(state, jax.tree.map(lambda x: x[0], xs))
      return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(body, state, xs)

  return jax.jit(train_chunk, donate_argnums=(0,), out_shardings=(state_sharding, metrics_sharding))


def scan_steps(train_config: ml_collections.ConfigDict) -> bool:
  """Whether a chunk of steps runs as one scanned call: `train.scan_steps` "auto" (all but CPUs), "true", "false"."""
  value = str(train_config.get("scan_steps", "auto")).lower()
  if value not in ("auto", "true", "false"):
    raise ConfigError(f"train.scan_steps must be 'auto', 'true' or 'false', got {value!r}")
  return jax.default_backend() != "cpu" if value == "auto" else value == "true"


def run_chunk(train_chunk: Callable, state, data, xs, scan: bool):
  """Steps [start, start + k) with their scan inputs `xs` [k, ...]: one call, or one call a step.

  Returns (state, metrics stacked over the k steps, still on the devices).
  """
  if scan:
    return train_chunk(state, data, xs)
  parts = []
  for i in range(jax.tree.leaves(xs)[0].shape[0]):
    state, metrics = train_chunk(state, data, jax.tree.map(lambda x: x[i : i + 1], xs))
    parts.append(metrics)
  return state, jax.tree.map(lambda *ms: jnp.concatenate(ms), *parts)


def make_eval_step(task: Task, eval_fn: Callable, replicated: Any) -> Callable:
  """The jitted eval call: `step(state, batch, sums) -> (sums, outputs)`.

  `sums`: the (sum, count) pairs of `task.eval_step` added to those given (None for a split's
  first batch). `outputs`: `task.eval_outputs` of the batch with its "mask", or {} for a task
  without; like the sums, replicated over the mesh (gathered from the devices holding each
  row), so that every process can read them whole.
  """

  def step(state, batch, sums):
    batch = eval_fn(batch)
    new = task.eval_step(state, batch)
    if sums is not None:
      new = jax.tree.map(jnp.add, sums, new)
    outputs = task.eval_outputs(state, batch)
    if outputs:
      if "mask" in outputs:
        raise ValueError(f"{type(task).__name__}.eval_outputs may not name an output 'mask'")
      outputs = {**outputs, "mask": batch["mask"]}
    return new, outputs

  return jax.jit(step, out_shardings=replicated)


def evaluate_split(
  task: Task, state, eval_step: Callable, batches: Any, split_name: str
) -> dict[str, float]:
  """One split's metrics: `task.eval_metrics` of the (sum, count) pairs summed on the device and
  read once, and `task.evaluate_outputs` of its per-example outputs (`split_outputs`)."""
  sums, outputs = split_outputs(state, eval_step, batches)
  results = task.eval_metrics(jax.device_get(sums))
  if outputs:
    scored = task.evaluate_outputs(outputs, split_name)
    both = sorted(set(scored) & set(results))
    if both:
      raise ValueError(
        f"{type(task).__name__} reports {both} from both eval_metrics and evaluate_outputs"
      )
    results.update(scored)
  return results


def split_outputs(state, eval_step: Callable, batches: Any) -> tuple[Any, dict[str, np.ndarray]]:
  """(the split's summed (sum, count) pairs, still on the device; its per-example outputs on the
  host: name -> [num_examples, ...], each real example once, in the split's order).

  The padding rows of the last batch (copies of the first example, where "mask" is False) are
  dropped, so that no example is scored twice. `batches`: `eval_batches` of the split;
  `eval_step`: `make_eval_step`'s.
  """
  sums, parts = None, []
  for batch in batches:
    sums, outputs = eval_step(state, batch, sums)
    if outputs:
      parts.append(outputs)  # read after the last batch: the device is not kept waiting
  if not parts:
    return sums, {}
  parts = jax.device_get(parts)
  real = np.concatenate([p.pop("mask") for p in parts]).astype(bool)
  return sums, {k: np.concatenate([p[k] for p in parts])[real] for k in parts[0]}


def _check_metric_names(task: Task, state, batch, eval_splits, wanted: dict[str, str]) -> None:
  """Refuses a metric (config key -> "<split>/<metric>") that no evaluation reports, before the
  first step and before anything is written, not at the first evaluation."""
  if not any(wanted.values()):
    return  # nothing to check: skip tracing the eval step
  names = sorted(
    f"{split}/{m}" for split in eval_splits for m in task.eval_metric_names(state, batch)
  )
  for key, name in wanted.items():
    if name and name not in names:
      raise ConfigError(
        f"{key} {name!r} is not an eval metric; have {names} "
        f"(<split>/<metric>, the splits of data.eval_splits)"
      )


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, task_cls: type[Task]
) -> dict[str, Any]:
  """Trains `task_cls(config, spec)` on `config.data` in `workdir`; returns the run's summary.

  The summary: {"step", "train_wall_s", "eval": {split/metric: value}, "best_step",
  "early_stopped", "task": the task}. With early stopping, "eval" and "state" are the best
  evaluation's (see the module docstring); "step" is still the last step trained.
  Files in `workdir`: metrics.jsonl, config.json,
  checkpoints/, checkpoints_best/, curves.png, pictures, and W&B's offline run.
  """
  # A config built in code, not through apply_overrides, meets the same bounds; a misspelt model
  # or setting is found before a dataset is prepared.
  task_cls.check_settings(config)
  tc = config.train
  mesh = mesh_lib.make_mesh()
  spec, splits = get_splits(config.data)
  task = task_cls(config, spec)
  train_fn, eval_fn = make_preprocess(config.data)
  train_data = make_train_data(
    splits[config.data.train_split], config.data, tc.batch_size, mesh, tc.seed
  )
  init_rng, rng = jax.random.split(jax.random.key(tc.seed))

  # Initialise from a preprocessed example batch; every leaf replicated over the mesh.
  example = eval_fn(
    {k: jnp.asarray(v) for k, v in splits[config.data.train_split].read(np.arange(2)).items()}
  )
  replicated = mesh_lib.replicated(mesh)
  init = functools.partial(task.init_state, batch=example, total_steps=tc.steps)
  state_shape = jax.eval_shape(init, init_rng)
  state_sharding = jax.tree.map(lambda _: replicated, state_shape)
  state = jax.jit(init, out_shardings=state_sharding)(init_rng)
  _check_metric_names(
    task,
    state,
    {**example, "mask": jnp.ones(example["image"].shape[0], bool)},
    config.data.eval_splits,
    {
      "train.early_stopping.metric": tc.early_stopping.metric,
      "train.best_metric": tc.get("best_metric", ""),
    },
  )
  store = CheckpointStore(workdir, keep=tc.get("keep_checkpoints", 3))
  if (
    config.get("init_from", "") and store.latest_step() is None
  ):  # a resumed run restores its own state
    state = _init_from(
      task, state, config.init_from, replicated, config.get("init_from_prefix", "")
    )

  early = EarlyStopping(
    **{k: tc.early_stopping[k] for k in ("metric", "mode", "patience", "min_delta")}
  )
  best_metric, best_mode = tc.get("best_metric", ""), tc.get("best_mode", "min")
  if early.metric and not best_metric:  # early stopping selects by its own metric
    best_metric, best_mode = early.metric, early.mode
  meta = {
    "early_stopping": early.to_json(),
    "best_value": None,
    "best_step": None,
    "best_eval": None,
  }
  abstract_state = jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state_shape, state_sharding
  )
  restored = store.restore_latest(abstract_state)
  if restored is not None:
    state, meta = restored
    for k, v in meta["early_stopping"].items():
      setattr(early, k, v)
    logging.info("resumed from step %d in %s", int(state.step), store.directory)
  start = int(jax.device_get(state.step))
  writer = MetricWriter(workdir, config, start)

  train_chunk = make_train_chunk(task, train_fn, train_data.get, rng, state_sharding, replicated)

  eval_step = make_eval_step(task, eval_fn, replicated)

  def evaluate(state) -> dict[str, float]:
    """Every eval split's metrics, as "<split>/<metric>"."""
    results = {}
    for split_name in config.data.eval_splits:
      batches = eval_batches(splits[split_name], tc.get("eval_batch_size", 1000), mesh)
      for metric, value in evaluate_split(task, state, eval_step, batches, split_name).items():
        results[f"{split_name}/{metric}"] = value
    return results

  def write_visuals(state, step: int, final: bool = False) -> None:
    """Pictures of the first eval examples, drawn by process 0 alone from its local copy of the
    (replicated) state, so that the other processes need not take part."""
    if jax.process_index() != 0:
      return
    split = splits[config.data.eval_splits[0]]
    host = split.read(np.arange(min(64, len(split))))
    local_state = jax.tree.map(
      lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, state
    )
    batch = {k: jnp.asarray(v) for k, v in host.items()}
    batch = {
      **eval_fn(batch),
      "raw_image": batch["image"],
      "mask": jnp.ones(len(host["image"]), bool),
    }
    prefix = "final_" if final else f"step{step:07d}_"
    writer.write_images(
      step, task.visuals(local_state, batch, os.path.join(workdir, "pictures"), prefix)
    )

  total = tc.steps
  log_every = tc.log_every
  scan = scan_steps(tc)
  progress = Progress(total, start, tc.batch_size)
  t_train, step = 0.0, start
  last_eval = None  # (step, metrics) of the latest evaluation, reused as the final one
  try:
    while step < total and not early.stopped:
      end = _boundaries(step, total, [log_every, tc.eval_every, tc.checkpoint_every])
      t0 = time.perf_counter()
      state, metrics = run_chunk(
        train_chunk, state, train_data.data, train_data.xs(step, end - step), scan
      )
      metrics = jax.device_get(metrics)  # the only host transfer of train metrics: at logging steps
      t_train += time.perf_counter() - t0
      if not all(np.all(np.isfinite(v)) for v in metrics.values()):
        bad = [k for k, v in metrics.items() if not np.all(np.isfinite(v))]
        first = step + 1 + int(np.argmin(np.all([np.isfinite(metrics[k]) for k in bad], axis=0)))
        last = store.latest_step()
        raise NonFiniteLossError(
          f"non-finite {', '.join(bad)} at step {first} (steps {step + 1}-{end}); stopped without saving. "
          f"The last good checkpoint is "
          + (f"step {last} in {store.directory}" if last is not None else "none")
          + ". Lower the learning rate or enable optim.grad_clip_norm."
        )
      chunk, step = end - step, end
      record = {f"train/{k}": float(np.mean(v)) for k, v in metrics.items()}
      writer.write(step, record)
      progress.update(chunk, loss=record["train/loss"])
      is_best = False
      if (tc.eval_every and step % tc.eval_every == 0) or step == total:
        results = evaluate(state)
        last_eval = (step, results)
        writer.write(step, results)
        if early.metric:
          early.update(results[early.metric])
        if best_metric:
          if _is_better(results[best_metric], meta["best_value"], best_mode):
            meta["best_value"], meta["best_step"], is_best = results[best_metric], step, True
            meta["best_eval"] = results
        if tc.get("visuals_every", 0) and step % tc.visuals_every == 0:
          write_visuals(state, step)
      meta["early_stopping"] = early.to_json()
      if (
        (tc.checkpoint_every and step % tc.checkpoint_every == 0)
        or step == total
        or early.stopped
        or is_best
      ):
        store.save(step, state, meta, best=is_best)
      progress.reset_clock()
  finally:
    progress.close()
    store.wait()

  # Training ends on an evaluation (the last step, or the one that stopped it early): its metrics
  # are the final ones. Only a run resumed at its end evaluates here.
  final = last_eval[1] if last_eval and last_eval[0] == step else evaluate(state)
  restore_best = early.metric and tc.early_stopping.get("restore_best", True)
  if restore_best and meta.get("best_step") is not None and meta["best_step"] != step:
    state = store.restore_best(abstract_state)[0]
    final = meta.get("best_eval") or evaluate(state)
    logging.info(
      "early stopping: ending on step %d's parameters (best %s %.5g), trained to step %d",
      meta["best_step"],
      best_metric,
      meta["best_value"],
      step,
    )
  if step != start:
    writer.write(step, {f"final_{k}": v for k, v in final.items()})
  write_visuals(state, step, final=True)
  if jax.process_index() == 0:
    records = read_metrics(workdir)
    if records:
      try:
        writer.write_images(
          step,
          {
            "curves": plotting.plot_curves(
              records, os.path.join(workdir, "curves.png"), title=config.get("name", "")
            )
          },
        )
      except ValueError:
        pass
  writer.close()
  store.close()
  return {
    "step": step,
    "train_wall_s": t_train,
    "eval": final,
    "best_step": meta["best_step"],
    "best_value": meta["best_value"],
    "early_stopped": early.stopped,
    "state": state,
    "task": task,
  }


def _init_from(task: Task, state, path: str, sharding, prefix: str = ""):
  """Starts from saved variables (`load_variables`: saved variables, or a run's checkpoint),
  placed under the module `prefix` ("" for the whole model; `config.init_from_prefix`), as
  `checkpoint.restore_variables` merges them. The optimizer state is built afresh for the merged
  parameters.
  """
  variables = restore_variables(
    {"params": state.params, **state.model_state}, load_variables(path), prefix, source=path
  )
  params = variables.pop("params")
  put = lambda t: jax.device_put(t, sharding)
  return state.replace(
    params=put(params), model_state=put(variables), opt_state=put(task.tx.init(params))
  )
