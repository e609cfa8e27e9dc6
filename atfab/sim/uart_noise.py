"""What a UART receiver set to one baud rate makes of bytes sent at another.

The ESP8266 ROM prints its boot log on UART0 at 74880 baud (26 MHz crystal), while the AT host
listens at 115200: it receives noise, not text. :func:`resample` computes that noise bit by bit
instead of inventing it: the sender's frames (start bit, 8 data bits LSB first, stop bit, idle
high between) are sampled by an 8N1 receiver that waits for a falling edge, samples each bit in
its middle, and passes on every byte it framed, also those whose stop bit was wrong (what a
serial driver delivers with a framing-error flag that pyserial does not show).
"""

from __future__ import annotations

import math


def _bits(data: bytes) -> list[int]:
    out: list[int] = []
    for b in data:
        out.append(0)
        out.extend((b >> i) & 1 for i in range(8))
        out.append(1)
    return out


def resample(data: bytes, tx_baud: int, rx_baud: int) -> bytes:
    """The bytes an 8N1 receiver at ``rx_baud`` reads from ``data`` sent 8N1 at ``tx_baud``."""
    if tx_baud <= 0 or rx_baud <= 0:
        raise ValueError("baud rates must be positive")
    if tx_baud == rx_baud:
        return bytes(data)
    bits = _bits(data)
    tx_bit, rx_bit = 1.0 / tx_baud, 1.0 / rx_baud
    total = len(bits) * tx_bit

    def level(t: float) -> int:
        i = int(t / tx_bit)
        return bits[i] if 0 <= i < len(bits) else 1

    def next_falling_edge(t: float) -> float | None:
        """First sender bit boundary at or after ``t`` where the line goes from 1 to 0."""
        i = max(1, math.ceil(t / tx_bit - 1e-9))
        while i < len(bits):
            if bits[i] == 0 and bits[i - 1] == 1:
                return i * tx_bit
            i += 1
        return None

    out = bytearray()
    start: float | None = 0.0 if bits and bits[0] == 0 else next_falling_edge(0.0)
    while start is not None and start < total:
        value = 0
        for k in range(8):
            value |= level(start + (1.5 + k) * rx_bit) << k
        out.append(value)
        t = start + 9.5 * rx_bit                      # the stop bit's sampling point
        if level(t) == 0:                             # framing error: wait for the line to go idle
            while t < total and level(t) == 0:
                t += tx_bit
        start = next_falling_edge(t)
    return bytes(out)


__all__ = ["resample"]
