"""What a gradient-trained run trains (full weights or LoRA) and how: finetuning, its shortcuts, the finetuned
settings' data."""
