"""azr-jax: Absolute Zero Reasoner self-play RL, native to JAX.

Citations "§N" in docstrings and comments refer to sections of docs/reference.md (the reference
implementation's behaviour, which this project follows); where azr-jax deliberately differs, the
code says "Differs:" and docs/algorithm.md lists the project decisions. docs/architecture.md says
where each concept lives.
"""

__version__ = "0.1.0"
