"""Gradients of pooling and the window ops (see fastconv.grad)."""

__all__: list[str] = []
