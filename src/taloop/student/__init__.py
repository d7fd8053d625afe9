"""The student: loading models, LoRA training and its loss, decoding, evaluation, model cards."""
