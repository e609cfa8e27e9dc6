"""The virtual ESP-AT module: a simulated chip that the real esptool flashes over ``socket://``
and whose AT firmware answers from the partitions that were actually flashed."""
