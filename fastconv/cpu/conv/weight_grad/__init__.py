"""Convolution weight gradients on the CPU (dispatch family "conv_weight_grad"):
operands.py (the padded input and grad_output in the working layout), direct.py (any
groups, register tiles of out-channels by in-channels), depthwise.py (one in-channel
per group, channels along the vector), depthwise_tiled.py (its register-tiled kernels),
gemm.py (1x1 layers, GEMMs in the user's layout), im2col.py (grad_output @ columns, both
in the user's layout), columns.py (its columns, built from the unpadded input), fused.py
(long channels-last pixel sums: columns built in cache, per piece of the sum), tiled.py (register
tiles over each tap's pixels, no columns: auto's choice beyond depthwise, 1x1 and channels-first stems)."""
