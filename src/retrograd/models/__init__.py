"""Reference models built from ``rg.nn``: ``MLP``, ``CNN``, a character-level ``GPT``, and the pretrained
``BertModel`` / ``SentenceEncoder`` (Hugging Face folders; ``retrograd[pretrained]``) with fine-tuning
helpers (``finetune``: heads, freezing, layer-wise LR decay; ``lora``: LoRA adapters).

Each is a plain ``nn.Module`` (``state_dict`` keys are stable, so checkpoints
and PyTorch ports line up). ``MODELS`` maps the names the ``retrograd`` CLI
accepts in ``[model] name`` to the classes.
"""
from .bert import BertConfig, BertModel, BertModelOutput
from .cnn import CNN
from .finetune import SequenceClassifier, SequenceRegressor
from .gpt import GPT, Block, CausalSelfAttention
from .lora import LoRALinear, apply_lora
from .mlp import ACTIVATIONS, INITS, MLP
from .pretrained_task import PretrainedTask
from .sentence import Pooling, SentenceEncoder

MODELS = {"mlp": MLP, "cnn": CNN, "gpt": GPT, "pretrained": PretrainedTask}

__all__ = ["MLP", "CNN", "GPT", "Block", "CausalSelfAttention", "MODELS", "ACTIVATIONS", "INITS",
           "BertConfig", "BertModel", "BertModelOutput", "SentenceEncoder", "Pooling",
           "SequenceClassifier", "SequenceRegressor", "LoRALinear", "apply_lora", "PretrainedTask"]
