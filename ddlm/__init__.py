"""ddlm: a byte-level masked diffusion language model you can step through."""

from .model import DiffusionLM, ModelConfig
from .pretrained import load_pretrained
from .sampling import Generation, generate, generate_ar, infill
from .tokenizer import ByteTokenizer

__version__ = "0.1.0"
__all__ = [
    "ByteTokenizer",
    "DiffusionLM",
    "Generation",
    "ModelConfig",
    "__version__",
    "generate",
    "generate_ar",
    "infill",
    "load_pretrained",
]
