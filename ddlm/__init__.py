"""ddlm: a byte-level masked diffusion language model you can step through."""

from .ar import generate_ar
from .model import DiffusionLM, ModelConfig, load_pretrained
from .sampling import Generation, SamplerConfig, denoise, generate, infill
from .tokenizer import ByteTokenizer

__version__ = "0.1.0"
__all__ = [
    "ByteTokenizer",
    "DiffusionLM",
    "Generation",
    "ModelConfig",
    "SamplerConfig",
    "__version__",
    "denoise",
    "generate",
    "generate_ar",
    "infill",
    "load_pretrained",
]
