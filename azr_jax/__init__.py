"""azr-jax: Absolute Zero Reasoner self-play RL, native to JAX."""

__version__ = "0.1.0"
