"""Convolution weight gradients on the CPU (dispatch family "conv_weight_grad"):
operands.py (the padded input and grad_output in the working layout), direct.py (any
groups, register tiles of out-channels by in-channels), depthwise.py (one in-channel
per group, channels along the vector), depthwise_tiled.py (its register-tiled kernels),
gemm.py (1x1 layers, GEMMs in the user's layout)."""
