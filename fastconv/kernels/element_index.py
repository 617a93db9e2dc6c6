"""The position of one element of a 5-D array from its flat index, for kernels whose
threads each own one element (a grid-stride loop over the flat index)."""

from __future__ import annotations

from .inline import inline_helper


@inline_helper
def element_position(i, channels_last, c_n, d_n, h_n, w_n):
    """(n, c, d, h, w) of element ``i`` of a C-ordered (N, D, H, W, C) array if
    ``channels_last``, else (N, C, D, H, W). (cuda/pool_grad.py decodes with one division
    per axis and the remainder by a multiply instead: there that form kept ptxas from
    spilling; in the pooling and depthwise kernels here it cost 4-16 registers.)"""
    if channels_last:
        c = i % c_n
        r = i // c_n
        w = r % w_n
        r = r // w_n
        h = r % h_n
        r = r // h_n
        d = r % d_n
        n = r // d_n
    else:
        w = i % w_n
        r = i // w_n
        h = r % h_n
        r = r // h_n
        d = r % d_n
        r = r // d_n
        c = r % c_n
        n = r // c_n
    return n, c, d, h, w


@inline_helper
def pixel_position(p, od_n, oh_n, ow_n):
    """(n, od, oh, ow) of output pixel ``p``, flat over (N, OD, OH, OW): a row of the
    im2col column matrices."""
    plane = od_n * oh_n * ow_n
    n = p // plane
    q = p - n * plane
    od = q // (oh_n * ow_n)
    q -= od * (oh_n * ow_n)
    oh = q // ow_n
    return n, od, oh, q - oh * ow_n
