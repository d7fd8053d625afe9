"""taloop: Teaching-Assistant-in-the-Loop distillation as a DVC pipeline."""

__version__ = "0.1.0"
