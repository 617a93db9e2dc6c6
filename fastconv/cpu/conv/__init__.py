"""Forward convolution on the CPU, one module or package per algorithm (dispatch family "conv")."""
