"""The GPU-sized measurements as one prepared command, for a session lent an accelerator machine.

Such a machine comes bare, for minutes, with its own Python (3.12 there, 3.11 here) and only part
of the stack (jax, flax, optax, orbax-checkpoint and torch, not tensorflow-datasets, grain or
ml-collections), and it reaches no package registry. So the work is split in two.

Here, on the project's CPU machine (it downloads from PyPI; everything goes to .device/, which git
ignores):

    python -m scripts.device_run prepare [--data cifar10] [--prepared transfer_pets] [--resume-from DIR]

There, through the device tool, with carry [".device"] (stdlib only until the wheels are in):

    python3 -m scripts.device_run run --out "$OUT" --budget-s 540 torch_resnet20 vgg16_bn

`prepare` resolves what requirements.txt needs on top of the machine's packages for its Python
(`pip install --dry-run --report` for that platform), downloads those wheels to .device/whl
(building the one sdist-only package, promise, into a wheel here), and copies the datasets the jobs
read to .device/datasets: as their source files (`--data`), or, where those are too big to carry,
as the prepared dataset an experiment's config reads (`--prepared`: the Oxford-IIIT Pet subset is
60 MB of full-size JPEGs, its 64x64 preparation 7 MB), which its job opens with
`--config.data.dataset=prepared:{device}/prepared/<experiment>`. By default both are what the
jobs name (`Job.data`, `Job.prepared`). `run` installs the wheels into /tmp/site, then runs the
named jobs one after another, each in runs/device/<job> with W&B off and a timeout that keeps the whole run inside
`--budget-s`. It then writes at most three files to --out: summary.json (each job's status, wall
time, result.json and the GPU's name), results.tar.gz (each job's workdir: metrics, curves,
pictures, result.json and log; an unfinished job's checkpoints too) and run.log.

A job stopped at its timeout resumes in a later session: unpack results.tar.gz into a folder,
`prepare --resume-from <folder>/runs/device` puts its workdirs into .device/runs, and `run` starts
each job from there (the loop resumes from its last checkpoint and ends as an uninterrupted run).

`python -m scripts.device_run list` prints the jobs with their H200 estimates.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE_DIR = os.path.join(REPO_ROOT, ".device")
RUNS_DIR = os.path.join("runs", "device")  # relative to the repository root, where jobs run
NO_WANDB = "--config.wandb.mode=disabled"


@dataclasses.dataclass(frozen=True)
class Job:
  """One measurement: a command run from the repository root, `{workdir}` filled in."""

  command: str
  about: str
  minutes: float  # wall time on one H200 with set-up and compilation: measured for resnet20 (4), guessed elsewhere
  data: tuple[str, ...] = ()  # datasets under $VISION_JAX_DATASETS it reads
  env: tuple[tuple[str, str], ...] = ()  # extra environment variables, e.g. XLA_FLAGS to try
  prepared: tuple[
    str, ...
  ] = ()  # experiments whose prepared dataset it reads from {device}/prepared/<experiment>


# In the order the open issues want them (#3 first: its ResNet-20 gap, then VGG and GoogLeNet, ...).
JOBS: dict[str, Job] = {
  "torch_resnet20": Job(
    "python -m scripts.torch_resnet_cifar10 --workdir {workdir}",
    "He et al.'s ResNet-20 in plain PyTorch on our data and recipe, 64k steps: is the 12.48% the data or our code?",
    6,
    ("cifar10",),
  ),
  "resnet20": Job(
    f"python -m experiments.resnet_cifar10 --workdir {{workdir}} --variant model=resnet20 {NO_WANDB}",
    "ResNet-20 on CIFAR-10, the paper's recipe (Table 6: 8.75%)",
    4,
    ("cifar10",),
  ),
  "resnet56": Job(
    f"python -m experiments.resnet_cifar10 --workdir {{workdir}} --variant model=resnet56 {NO_WANDB}",
    "ResNet-56 on CIFAR-10, the paper's recipe (Table 6: 6.97%)",
    8,
    ("cifar10",),
  ),
  "vgg16_bn": Job(
    f"python -m experiments.vgg_cifar10 --workdir {{workdir}} {NO_WANDB}",
    "VGG-16 with BatchNorm on CIFAR-10",
    6,
    ("cifar10",),
  ),
  "googlenet_aux": Job(
    f"python -m scripts.sweep googlenet_cifar10 --sweep aux --workdir {{workdir}} {NO_WANDB}",
    "GoogLeNet on CIFAR-10 with and without its auxiliary classifiers",
    14,
    ("cifar10",),
  ),
  "degradation": Job(
    f"python -m scripts.sweep resnet_cifar10 --sweep degradation --jobs 2 --workdir {{workdir}} {NO_WANDB}",
    "He et al. Figure 6: plain-20/56 against ResNet-20/56 (two points at a time on the GPU)",
    15,
    ("cifar10",),
  ),
  # The lecture's ablations at the paper's full schedule (64k steps each; docs/ablations/ has them at
  # one epoch on a CPU): three ResNet-20 points at a time share the GPU.
  "ablation_optimizers": Job(
    f"python -m scripts.sweep resnet_cifar10 --sweep optimizers --jobs 3 --workdir {{workdir}} {NO_WANDB}",
    "ResNet-20 with SGD, momentum, Nesterov, Adam, AdaGrad and RMSprop, 64k steps each",
    12,
    ("cifar10",),
  ),
  "ablation_losses": Job(
    f"python -m scripts.sweep resnet_cifar10 --sweep losses --jobs 3 --workdir {{workdir}} {NO_WANDB}",
    "ResNet-20 with cross-entropy, MSE and focal loss, 64k steps each",
    6,
    ("cifar10",),
  ),
  "ablation_regularisation": Job(
    f"python -m scripts.sweep resnet_cifar10 --sweep regularisation --jobs 3 --workdir {{workdir}} {NO_WANDB}",
    "ResNet-20 (45k/5k) without augmentation, with dropout, without weight decay, early-stopped, 64k steps",
    12,
    ("cifar10",),
  ),
  "bench_resnet20": Job(
    "python -m scripts.bench resnet20 --batch 128 --steps-per-call 100 --steps 3000 --json {workdir}/bench.json",
    "ResNet-20 train-step throughput, 100 steps per call (goal: 64k steps in 75 s)",
    1.5,
  ),
  "bench_resnet50": Job(
    "python -m scripts.bench resnet50 --batch 256 --image-size 224 --dtype bfloat16 --steps-per-call 10 "
    "--steps 100 --compare-torch --torch-compile --json {workdir}/bench.json",
    "ResNet-50 bf16 against torchvision with torch.compile, same device (goal: 8,000 img/s, 1.15x)",
    4,
  ),
  # Towards #3's goal of ResNet-20's 64k steps in 75 s (146 s at 56k img/s so far): bf16 compute,
  # and the scanned steps' loop captured whole as one CUDA graph by XLA's command buffers.
  "bench_resnet20_bf16": Job(
    "python -m scripts.bench resnet20 --batch 128 --steps-per-call 100 --steps 3000 --dtype bfloat16 "
    "--json {workdir}/bench.json",
    "ResNet-20 train-step throughput in bfloat16 compute",
    1.5,
  ),
  "bench_resnet20_graphs": Job(
    "python -m scripts.bench resnet20 --batch 128 --steps-per-call 100 --steps 3000 --json {workdir}/bench.json",
    "ResNet-20 throughput with the scan's while loop in XLA's command buffers (CUDA graphs)",
    1.5,
    env=(
      (
        "XLA_FLAGS",
        "--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL "
        "--xla_gpu_command_buffer_unroll_loops=true",
      ),
    ),
  ),
  "transfer_pets": Job(
    f"python -m experiments.transfer_pets --workdir {{workdir}} "
    f"--config.data.dataset=prepared:{{device}}/prepared/transfer_pets --config.seeds=3 {NO_WANDB}",
    "ResNet-20 pretrained on CIFAR-10 for 64k steps, then 3 pet breeds at 64x64: scratch, linear probe, "
    "fine-tuning, 3 seeds each",
    7,
    ("cifar10",),
    prepared=("transfer_pets",),
  ),
  # Where ResNet-20's step time goes on the GPU: busy fraction, kernels per step, idle gaps, top kernels.
  "profile_resnet20": Job(
    "python -m scripts.bench resnet20 --batch 128 --steps-per-call 100 --steps 1000 --profile {workdir}/trace "
    "--json {workdir}/bench.json",
    "ResNet-20's step traced with jax.profiler: is it bound by kernel launches or by the kernels?",
    1.5,
  ),
  "dcgan_cifar10": Job(
    f"python -m experiments.dcgan_cifar10 --workdir {{workdir}} {NO_WANDB}",
    "DCGAN on CIFAR-10, 5,000 generator updates at width 64",
    5,
    ("cifar10",),
  ),
  "wgan_gp_cifar10": Job(
    f"python -m experiments.wgan_gp_cifar10 --workdir {{workdir}} {NO_WANDB}",
    "WGAN-GP on CIFAR-10, 5,000 generator updates at width 64",
    8,
    ("cifar10",),
  ),
  # For the tests of this script, and to check a machine in seconds.
  "smoke": Job(
    f"python -m experiments.lenet5_digits --workdir {{workdir}} --variant smoke {NO_WANDB}",
    "LeNet-5 on scikit-learn's digits, a few steps",
    0.5,
  ),
}


def _normal(name: str) -> str:
  return name.lower().replace("_", "-").replace(".", "-")


# What the accelerator machine's image already holds (its Python 3.12), as the device tool's
# KINDS.md lists it (read 2026-11-17): these are not carried. Everything else requirements.txt needs is.
DEVICE_HAS = frozenset(
  _normal(n)
  for n in """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning
pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz
torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split()
)
# W&B is left behind: the jobs run with it off, and it and its dependencies are ~25 MB of the 64 MiB.
NOT_CARRIED = frozenset({"wandb"})
SDIST_ONLY = ("promise==2.3",)  # tensorflow-datasets needs it; PyPI has no wheel
DEVICE_PYTHON = "3.12"
DEVICE_PLATFORMS = (
  "manylinux_2_28_x86_64",
  "manylinux_2_27_x86_64",
  "manylinux_2_24_x86_64",
  "manylinux_2_17_x86_64",
  "manylinux2014_x86_64",
  "manylinux1_x86_64",
  "any",
)


def _requirements(path: str) -> list[str]:
  """The pinned requirements of a requirements file, comments and -r lines left out."""
  out = []
  with open(path) as f:
    for line in f:
      line = line.split("#", 1)[0].strip()
      if line and not line.startswith("-"):
        out.append(line)
  return out


def _requirement_name(requirement: str) -> str:
  for sep in ("==", ">=", "<=", "~=", "<", ">", "["):
    requirement = requirement.split(sep, 1)[0]
  return _normal(requirement.strip())


def wanted_requirements(requirements: Sequence[str]) -> list[str]:
  """The requirements the device lacks (neither there nor left behind on purpose)."""
  return [r for r in requirements if _requirement_name(r) not in DEVICE_HAS | NOT_CARRIED]


def carry_prepared(experiments: Sequence[str], dest: str) -> None:
  """Prepares each experiment's dataset (its default config's `data`) here, if it is not yet, and
  copies the prepared folder to dest/<experiment>, for `prepared:<folder>` on the device."""
  from vision_jax.config import load_config  # pylint: disable=g-import-not-at-top
  from vision_jax.data.sources import get_source  # pylint: disable=g-import-not-at-top

  shutil.rmtree(dest, ignore_errors=True)
  for name in experiments:
    data = load_config(name).data
    options = data.get("format_options")
    try:
      source = get_source(data.dataset, **(options.to_dict() if options else {}))
    except ValueError as e:  # DatasetError: the source is missing or bad
      raise SystemExit(f"error: --prepared {name}: {e} (or leave it out: --prepared '')") from e
    if source.folder is None:
      raise SystemExit(
        f"error: {name} reads {data.dataset}, which is not a local dataset vision_jax prepares"
      )
    shutil.copytree(source.folder, os.path.join(dest, name))


def prepare(
  data: Sequence[str],
  resume_from: str | None,
  datasets_root: str,
  prepared: Sequence[str] = (),
  python: str = sys.executable,
) -> None:
  """Fills .device/: the wheels the device lacks, the datasets, and runs to resume."""
  wheels = os.path.join(DEVICE_DIR, "whl")
  shutil.rmtree(wheels, ignore_errors=True)
  os.makedirs(wheels)
  platform_flags = [
    "--python-version",
    DEVICE_PYTHON,
    "--implementation",
    "cp",
    "--only-binary=:all:",
    *[f"--platform={p}" for p in DEVICE_PLATFORMS],
  ]
  for sdist in SDIST_ONLY:
    subprocess.run(
      [python, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, sdist], check=True
    )
  wanted = wanted_requirements(_requirements(os.path.join(REPO_ROOT, "requirements.txt")))
  with tempfile.TemporaryDirectory() as tmp:
    report = os.path.join(tmp, "report.json")
    subprocess.run(
      [
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--dry-run",
        "--ignore-installed",
        "--report",
        report,
        "--target",
        os.path.join(tmp, "target"),
        "--find-links",
        wheels,
        *platform_flags,
        *wanted,
      ],
      check=True,
    )
    with open(report) as f:
      resolved = [
        (i["metadata"]["name"], i["metadata"]["version"]) for i in json.load(f)["install"]
      ]
  built = {_requirement_name(r) for r in SDIST_ONLY}
  carried = [f"{n}=={v}" for n, v in resolved if _normal(n) not in DEVICE_HAS | NOT_CARRIED | built]
  subprocess.run(
    [
      python,
      "-m",
      "pip",
      "download",
      "--quiet",
      "--no-deps",
      "-d",
      wheels,
      *platform_flags,
      *carried,
    ],
    check=True,
  )
  datasets = os.path.join(DEVICE_DIR, "datasets")
  shutil.rmtree(datasets, ignore_errors=True)
  for name in data:
    source = os.path.join(datasets_root, name)
    if not os.path.isdir(source):
      raise SystemExit(
        f"error: {source} is not a folder; --data names folders under $VISION_JAX_DATASETS"
      )
    shutil.copytree(source, os.path.join(datasets, name))
  carry_prepared(prepared, os.path.join(DEVICE_DIR, "prepared"))
  runs = os.path.join(DEVICE_DIR, "runs")
  shutil.rmtree(runs, ignore_errors=True)
  if resume_from:
    for workdir in sorted(glob.glob(os.path.join(resume_from, "*"))):
      if os.path.basename(workdir) in JOBS and os.path.isdir(workdir):
        shutil.copytree(workdir, os.path.join(runs, os.path.basename(workdir)))
  size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(DEVICE_DIR) for f in fs)
  print(
    f"{DEVICE_DIR}: {len(os.listdir(wheels))} wheels, data {', '.join(data) or 'none'}, "
    f"prepared data of {', '.join(prepared) or 'none'}, "
    f"{len(os.listdir(runs)) if os.path.isdir(runs) else 0} runs to resume; {size / 2**20:.1f} MiB "
    "(the device tool carries at most 64 MiB with the working tree)"
  )


def install_wheels(python: str = sys.executable) -> dict[str, str]:
  """Installs .device/whl into /tmp/site; returns the environment the jobs run in."""
  env = dict(os.environ)
  wheels = sorted(glob.glob(os.path.join(DEVICE_DIR, "whl", "*.whl")))
  if wheels:
    site = "/tmp/site"
    subprocess.run(
      [
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--upgrade",
        "--target",
        site,
        *wheels,
      ],
      check=True,
    )
    env["PYTHONPATH"] = os.pathsep.join([site, *filter(None, [env.get("PYTHONPATH")])])
  datasets = os.path.join(DEVICE_DIR, "datasets")
  if os.path.isdir(datasets):
    env["VISION_JAX_DATASETS"] = datasets
  env.setdefault("VISION_JAX_CACHE", os.path.join(tempfile.gettempdir(), "vision_jax_cache"))
  env["VISION_JAX_NO_PROGRESS"] = "1"
  env["PYTHONUNBUFFERED"] = "1"
  return env


def _gpu_name() -> str:
  try:
    out = subprocess.run(
      ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
      capture_output=True,
      text=True,
      timeout=30,
    )
    return out.stdout.strip().replace("\n", ", ") or "no GPU reported"
  except (OSError, subprocess.SubprocessError):
    return "no nvidia-smi"


def run_job(name: str, job: Job, env: dict[str, str], timeout_s: float, log) -> dict:
  """Runs one job in its own process group; stops it (SIGTERM, then SIGKILL) at `timeout_s`."""
  workdir = os.path.join(RUNS_DIR, name)
  resume = os.path.join(DEVICE_DIR, "runs", name)
  if os.path.isdir(resume) and not os.path.exists(os.path.join(REPO_ROOT, workdir)):
    shutil.copytree(resume, os.path.join(REPO_ROOT, workdir))
  os.makedirs(os.path.join(REPO_ROOT, workdir), exist_ok=True)
  command = job.command.format(workdir=workdir, device=os.path.relpath(DEVICE_DIR, REPO_ROOT))
  env = {**env, **dict(job.env)}
  shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in job.env) + (" " if job.env else "") + command
  log.write(f"\n=== {name}: {shown} (timeout {timeout_s:.0f} s)\n")
  log.flush()
  t0 = time.perf_counter()
  with open(os.path.join(REPO_ROOT, workdir, "log.txt"), "a") as job_log:
    process = subprocess.Popen(
      shlex.split(command.replace("python ", f"{shlex.quote(sys.executable)} ", 1)),
      cwd=REPO_ROOT,
      env=env,
      stdout=job_log,
      stderr=subprocess.STDOUT,
      start_new_session=True,
    )
    status = "done"
    try:
      returncode = process.wait(timeout=max(1.0, timeout_s))
      if returncode != 0:
        status = "failed"
    except subprocess.TimeoutExpired:
      status = "timed out"
      os.killpg(process.pid, signal.SIGTERM)
      try:
        returncode = process.wait(timeout=20)
      except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        returncode = process.wait()
  wall_s = round(time.perf_counter() - t0, 1)
  entry = {
    "job": name,
    "command": shown,
    "status": status,
    "returncode": returncode,
    "wall_s": wall_s,
    "about": job.about,
  }
  for result_name in ("result.json", "bench.json"):
    path = os.path.join(REPO_ROOT, workdir, result_name)
    if os.path.exists(path):
      with open(path) as f:
        entry[result_name.split(".")[0]] = json.load(f)
  log.write(f"=== {name}: {status} after {wall_s:.0f} s\n")
  with open(os.path.join(REPO_ROOT, workdir, "log.txt"), errors="replace") as f:
    log.write("".join(f.readlines()[-20:]))
  log.flush()
  return entry


def pack(entries: Sequence[dict], out: str, limit_bytes: int = 15 * 2**20) -> str:
  """results.tar.gz of the jobs' workdirs: finished ones without checkpoints, unfinished ones with
  them (so that they can resume), and without checkpoints at all if that would not fit."""
  path = os.path.join(out, "results.tar.gz")
  for with_checkpoints in (True, False):
    with tarfile.open(path, "w:gz") as tar:
      for entry in entries:
        workdir = os.path.join(RUNS_DIR, entry["job"])
        keep = with_checkpoints and entry["status"] != "done"

        def skip(info, keep=keep):
          parts = info.name.split("/")
          if "wandb" in parts or (not keep and any(p.startswith("checkpoints") for p in parts)):
            return None
          return info

        tar.add(
          os.path.join(REPO_ROOT, workdir), arcname=f"runs/device/{entry['job']}", filter=skip
        )
    if os.path.getsize(path) <= limit_bytes:
      break
  return path


def run(jobs: Sequence[str], out: str, budget_s: float, reserve_s: float = 30.0) -> list[dict]:
  """Runs `jobs` in order inside `budget_s` (keeping `reserve_s` to pack); writes --out's files."""
  os.makedirs(out, exist_ok=True)
  t_start = time.perf_counter()
  entries = []
  with open(os.path.join(out, "run.log"), "w") as log:
    try:
      env = install_wheels()
    except (
      subprocess.CalledProcessError
    ) as e:  # the jobs will say what is missing; the files still come back
      log.write(f"installing the carried wheels failed: {e}\n")
      env = dict(os.environ)
    gpu = _gpu_name()
    log.write(
      f"GPU: {gpu}\npython: {sys.version.split()[0]}\nwheels installed in {time.perf_counter() - t_start:.0f} s\n"
    )
    for name in jobs:
      left = budget_s - reserve_s - (time.perf_counter() - t_start)
      if left < 10:
        entries.append({"job": name, "status": "not started", "about": JOBS[name].about})
        continue
      entries.append(run_job(name, JOBS[name], env, left, log))
      entries[-1]["gpu"] = gpu
  summary = {
    "gpu": gpu,
    "python": sys.version.split()[0],
    "budget_s": budget_s,
    "wall_s": round(time.perf_counter() - t_start, 1),
    "jobs": entries,
  }
  with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2, default=str)
  pack([e for e in entries if e["status"] != "not started"], out)
  for e in entries:
    result = e.get("result", {})
    value = f": {result.get('metric', 'value')} = {result.get('value')}" if result else ""
    print(
      f"{e['job']}: {e['status']}"
      + (f" after {e['wall_s']:.0f} s" if "wall_s" in e else "")
      + value
    )
  return entries


def _carried(field: str) -> str:
  """The comma-separated union of the jobs' `data` or `prepared`: what `prepare` carries by default."""
  return ",".join(sorted({name for job in JOBS.values() for name in getattr(job, field)}))


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("prepare", help="here: fill .device/ with the wheels, data and runs to carry")
  p.add_argument(
    "--data",
    default=_carried("data"),
    help="comma-separated folders of $VISION_JAX_DATASETS to carry (default: those the jobs read)",
  )
  p.add_argument(
    "--prepared",
    default=_carried("prepared"),
    help="comma-separated experiments whose dataset is carried prepared (default: those the jobs "
    "read so; see the module's docstring)",
  )
  p.add_argument(
    "--resume-from", default=None, help="a runs/device folder from an earlier results.tar.gz"
  )
  r = sub.add_parser("run", help="there: install the carried wheels, run the jobs, write --out")
  r.add_argument("jobs", nargs="+", help=f"in order; known: {', '.join(JOBS)}")
  r.add_argument(
    "--out", required=True, help="where summary.json, results.tar.gz and run.log go ($OUT)"
  )
  r.add_argument(
    "--budget-s",
    type=float,
    default=540.0,
    help="wall time for everything; a job still running when it is spent is stopped",
  )
  sub.add_parser("list", help="the jobs, with what they measure and their H200 estimates")
  args = parser.parse_args(argv)
  if args.command == "list":
    width = max(map(len, JOBS))
    for name, job in JOBS.items():
      print(f"{name:{width}s}  ~{job.minutes:g} min  {job.about}")
    return 0
  if args.command == "prepare":
    root = os.environ.get("VISION_JAX_DATASETS") or os.path.join(
      os.path.dirname(REPO_ROOT), "shared", "datasets"
    )
    prepare(
      [d for d in args.data.split(",") if d],
      args.resume_from,
      root,
      prepared=[e for e in args.prepared.split(",") if e],
    )
    return 0
  unknown = [j for j in args.jobs if j not in JOBS]
  if unknown:
    parser.error(f"unknown job(s) {', '.join(unknown)}; known: {', '.join(JOBS)}")
  if args.budget_s < 60:
    parser.error(f"--budget-s must be at least 60, got {args.budget_s:g}")
  entries = run(args.jobs, args.out, args.budget_s)
  return 0 if all(e["status"] == "done" for e in entries) else 1


if __name__ == "__main__":
  sys.exit(main())
