"""The one generic training loop and what it owns: state, steps, mesh, checkpoints, logging."""
