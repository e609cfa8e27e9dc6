"""The classic ESP32's flash-encryption transform, as the flash controller applies it to writes.

What the ESP32 Technical Reference Manual ("Flash Encryption", AES with the eFuse BLOCK1 key)
describes, and what ``espsecure encrypt-flash-data`` computes for ESP32: every 16-byte block at
flash address ``a`` is byte-reversed, run through AES-256 *decryption* (the flash controller uses
AES inverted) with a key derived from BLOCK1 and ``a`` (the "key tweak", chosen by the
FLASH_CRYPT_CONFIG eFuse), and byte-reversed again. A blank chip has BLOCK1 = 0 and
FLASH_CRYPT_CONFIG = 0 (no tweak): that is the only configuration the virtual module has, so the
tweak is not modelled and a non-zero config is refused.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
#: The encryption key of a blank ESP32 (eFuse BLOCK1 reads all zeros).
BLANK_BLOCK1_KEY = bytes(32)


def esp32_flash_encrypt(data: bytes, address: int, key: bytes = BLANK_BLOCK1_KEY,
                        crypt_config: int = 0) -> bytes:
    """``data`` (a multiple of 16 bytes, 16-byte aligned ``address``) as the flash stores it."""
    if address % BLOCK or len(data) % BLOCK:
        raise ValueError(f"encrypted write {address:#x}+{len(data):#x} is not 16-byte aligned")
    if len(key) != 32:
        raise ValueError("the ESP32 flash-encryption key is 256 bits")
    if crypt_config != 0:
        raise ValueError("FLASH_CRYPT_CONFIG key tweak is not modelled (a blank chip has 0)")
    # FLASH_CRYPT_CONFIG 0: the same key for every block, so one AES context does all of them.
    aes = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    out = bytearray()
    for i in range(0, len(data), BLOCK):
        out += aes.update(data[i:i + BLOCK][::-1])[::-1]
    return bytes(out)


__all__ = ["esp32_flash_encrypt", "BLANK_BLOCK1_KEY"]
