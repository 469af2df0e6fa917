"""Model families, registered by name. Import a family here to register it."""
from vision_jax.models import face_cnn, lenet, mlp  # noqa: F401  (registration)
from vision_jax.models.registry import get_model, list_models, register

__all__ = ["get_model", "list_models", "register"]
