"""Reads a VHD chain through libvhdi (Debian python3-libvhdi), an implementation that is not ours.

usage: /usr/bin/python3 libvhdi-read.py BLOCK_SIZE BLOCKS FULL [DELTA ...]
  oldest first (each delta's parent is the file before it); BLOCKS is a comma-separated list of block
  indexes (empty for none). Prints {"mediaSize": N, "blocks": {"<index>": "<sha256>", ...}}: the sha256
  of each listed block of the newest file's disk as libvhdi reads it (the last block cut at the media
  size). Reading only the listed blocks keeps a 2 TiB sparse disk cheap; the caller lists every block
  any layer holds or the host holds.
"""
import hashlib
import json
import sys

import pyvhdi

block_size = int(sys.argv[1])
indexes = [int(index) for index in sys.argv[2].split(",") if index != ""]
files = []
for path in sys.argv[3:]:
    vhd = pyvhdi.file()
    vhd.open(path)
    files.append(vhd)
# libvhdi checks that each parent's identifier is the one the child's header names.
for parent, child in zip(files, files[1:]):
    child.set_parent(parent)

newest = files[-1]
size = newest.get_media_size()
blocks = {}
for index in indexes:
    offset = index * block_size
    length = min(block_size, size - offset)
    if length <= 0:
        sys.exit(f"block {index} lies past the media size {size}")
    data = newest.read_buffer_at_offset(length, offset)
    if len(data) != length:
        sys.exit(f"libvhdi returned {len(data)} bytes at offset {offset}, expected {length}")
    blocks[str(index)] = hashlib.sha256(data).hexdigest()
print(json.dumps({"mediaSize": size, "blocks": blocks}))
