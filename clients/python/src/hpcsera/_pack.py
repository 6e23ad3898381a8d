"""Reproducible code bundles: a directory packed as tar.gz exactly as ``hpcsera code push``
packs it, so that the SDK and the CLI give the same bytes, and so the same SHA-256 (the
bundle's id), for the same tree.

The archive: entries depth first, sorted by the bytes of their names; GNU headers with
mtime 0, uid/gid 0 and no owner names; directories ``name/`` 0755, regular files 0644 or
0755 (executable by anyone), symlinks 0777 with their target; names over 100 bytes as GNU
long-name entries; then two zero blocks (no padding to a record). The gzip member has no
time, name or flags and OS "unknown"; its deflate stream is *stored* blocks of 65,535 bytes
(the last shorter), since compressed deflate output differs between zlib, zlib-ng and the
CLI's miniz_oxide, and stored blocks do not.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import zlib
from pathlib import Path

BLOCK = 512


def _octal(value: int, width: int) -> bytes:
    """A numeric header field: zero-padded octal and a NUL, as the tar crate writes it."""
    return f"{value:0{width - 1}o}".encode() + b"\0"


def _header(name: bytes, size: int, mode: int, kind: bytes, link: bytes = b"") -> bytes:
    h = bytearray(BLOCK)
    h[0 : len(name)] = name
    h[100:108] = _octal(mode, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(0, 12)
    h[156:157] = kind
    h[157 : 157 + len(link)] = link
    h[257:265] = b"ustar  \0"
    h[148:156] = b" " * 8
    checksum = sum(h)
    h[148:156] = _octal(checksum, 8)
    return bytes(h)


def _pad(n: int) -> bytes:
    return b"\0" * ((BLOCK - n % BLOCK) % BLOCK)


def _entry(name: bytes, size: int, mode: int, kind: bytes, link: bytes = b"") -> bytes:
    """The header blocks of one entry, with a GNU long-name (and long-link) entry first
    when a name does not fit."""
    out = b""
    if len(link) > 100:
        data = link + b"\0"
        out += _header(b"././@LongLink", len(data), 0o644, b"K") + data + _pad(len(data))
        link = link[:100]
    if len(name) > 100:
        data = name + b"\0"
        out += _header(b"././@LongLink", len(data), 0o644, b"L") + data + _pad(len(data))
        name = name[:100]
    return out + _header(name, size, mode, kind, link)


def _walk(root: Path, rel: bytes, out: list[tuple[bytes, Path]]) -> None:
    base = root / os.fsdecode(rel) if rel else root
    for name in sorted(os.fsencode(n) for n in os.listdir(base)):
        r = rel + b"/" + name if rel else name
        full = root / os.fsdecode(r)
        out.append((r, full))
        if stat.S_ISDIR(os.lstat(full).st_mode):
            _walk(root, r, out)


def tar_directory(directory: str | os.PathLike[str]) -> bytes:
    """The uncompressed, reproducible tar of ``directory`` (see the module's docs)."""
    root = Path(directory)
    entries: list[tuple[bytes, Path]] = []
    _walk(root, b"", entries)
    parts: list[bytes] = []
    for rel, full in entries:
        st = os.lstat(full)
        if stat.S_ISDIR(st.st_mode):
            parts.append(_entry(rel + b"/", 0, 0o755, b"5"))
        elif stat.S_ISLNK(st.st_mode):
            parts.append(_entry(rel, 0, 0o777, b"2", os.fsencode(os.readlink(full))))
        elif stat.S_ISREG(st.st_mode):
            mode = 0o755 if st.st_mode & 0o111 else 0o644
            data = full.read_bytes()
            parts.append(_entry(rel, len(data), mode, b"0") + data + _pad(len(data)))
        else:
            raise ValueError(
                f"{full} is neither a file, a directory nor a symlink; a code bundle cannot hold it"
            )
    parts.append(b"\0" * (2 * BLOCK))
    return b"".join(parts)


STORED_BLOCK = 65535


def gzip_stored(data: bytes) -> bytes:
    """``data`` as one gzip member (RFC 1952) in stored deflate blocks (RFC 1951 3.2.4)."""
    out = bytearray(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
    chunks = [data[i : i + STORED_BLOCK] for i in range(0, len(data), STORED_BLOCK)] or [b""]
    for i, chunk in enumerate(chunks):
        n = len(chunk)
        out += struct.pack("<BHH", 1 if i == len(chunks) - 1 else 0, n, n ^ 0xFFFF)
        out += chunk
    out += struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return bytes(out)


def pack_directory(directory: str | os.PathLike[str]) -> bytes:
    """``directory`` as the reproducible tar.gz ``hpcsera code push`` sends."""
    return gzip_stored(tar_directory(directory))


def bundle_id(data: bytes) -> str:
    """The id of a code bundle: the SHA-256 of its bytes, 64 lower-case hex digits."""
    return hashlib.sha256(data).hexdigest()
