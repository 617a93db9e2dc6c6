"""Gradients of the convolutions: input, weight and bias (see fastconv.grad)."""

__all__: list[str] = []
