"""algo="depthwise" (groups == channels): run.py (plan, dispatch by layout, registers),
nhwc.py (channels-last kernel), nchw.py (channels-first kernel), common.py (what both
share). The channels-last vector row is :mod:`fastconv.cpu.vector.depthwise_row`."""
