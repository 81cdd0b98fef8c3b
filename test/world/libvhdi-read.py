"""Reads a VHD chain through libvhdi (Debian python3-libvhdi), an implementation that is not ours.

usage: /usr/bin/python3 libvhdi-read.py FULL [DELTA ...]   (oldest first; each delta's parent is the file
before it). Prints {"mediaSize": N, "sha256": "..."} of the newest file's disk as libvhdi reads it.
"""
import hashlib
import json
import sys

import pyvhdi

CHUNK = 4 * 1024 * 1024

files = []
for path in sys.argv[1:]:
    vhd = pyvhdi.file()
    vhd.open(path)
    files.append(vhd)
# libvhdi checks that each parent's identifier is the one the child's header names.
for parent, child in zip(files, files[1:]):
    child.set_parent(parent)

newest = files[-1]
size = newest.get_media_size()
digest = hashlib.sha256()
offset = 0
while offset < size:
    length = min(CHUNK, size - offset)
    data = newest.read_buffer_at_offset(length, offset)
    if len(data) != length:
        sys.exit(f"libvhdi returned {len(data)} bytes at offset {offset}, expected {length}")
    digest.update(data)
    offset += length
print(json.dumps({"mediaSize": size, "sha256": digest.hexdigest()}))
