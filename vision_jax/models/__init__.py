"""Model families, registered by name. Import a family here to register it."""

from vision_jax.models import (  # noqa: F401
  alexnet,
  autoencoders,
  face_cnn,
  gan,
  googlenet,
  inception,
  lecture_example,
  lenet,
  mlp,
  resnet,
  vgg,
  yolo,
)
from vision_jax.models.registry import get_model, list_models, register

__all__ = ["get_model", "list_models", "register"]
