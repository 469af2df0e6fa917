"""Tasks: what a model family trains on. The loss, its metrics, evaluation and pictures, as pure
functions over (state, batch); the loop in `vision_jax.train.loop` owns everything else."""

from vision_jax.tasks.autoencoding import AutoencodingTask
from vision_jax.tasks.base import Task
from vision_jax.tasks.classification import ClassificationTask
from vision_jax.tasks.detection import DetectionTask
from vision_jax.tasks.embedding import EmbeddingTask
from vision_jax.tasks.gan import GANTask

__all__ = [
  "Task",
  "GANTask",
  "AutoencodingTask",
  "ClassificationTask",
  "DetectionTask",
  "EmbeddingTask",
]
