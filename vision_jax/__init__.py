"""vision_jax: the classic deep-learning canon for vision, reproduced in JAX."""
