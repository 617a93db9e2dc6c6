"""Pooling on the CPU: window.py (max/avg/Lp windows, channels-last kernels; registers
("pool", "direct")), window_nchw.py (channels-first kernels), adaptive.py (adaptive and
global pooling), run.py (running a pooling kernel on either layout, serial or parallel)."""
