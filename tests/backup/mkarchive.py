#!/usr/bin/env python3
"""Builds memory archives with Python's tarfile (pax) for the backup tests:
a correct one, and hostile variants a reader must refuse.

usage: mkarchive.py KIND OUT.tar MANIFEST_OUT
KIND: good, dotdot, absolute, symlink, hardlink, duplicate, undeclared, huge
"""
import hashlib, io, json, sys, tarfile, time

kind, out, manifest_out = sys.argv[1:4]
files = {
    "personality/state.json": b'{"mood":"curious"}',
    "memories/people/alice.json": b'{"name":"alice"}',
    "photos/p1.jpg": bytes(range(256)) * 40,
}
mtime = 1700000000

def b2(data):
    return hashlib.blake2b(data, digest_size=32)

entries = []
for path, data in sorted(files.items()):
    entries.append({"path": path, "size": len(data), "mode": 420, "mtime": mtime,
                    "digest": b2(data).hexdigest()})
if kind == "huge":
    entries.append({"path": "photos/huge.bin", "size": 10 * 10**12, "mode": 420,
                    "mtime": mtime, "digest": "00" * 32})
entries.sort(key=lambda e: e["path"].encode())

domains = {}
for e in entries:
    dom, rel = e["path"].split("/", 1)
    domains.setdefault(dom, []).append((rel.encode(), e))
dj = {}
for dom, items in domains.items():
    h = b2(b"")
    for rel, e in sorted(items, key=lambda t: t[0]):
        h.update(rel + b"\0" + e["size"].to_bytes(8, "big") + bytes.fromhex(e["digest"]))
    dj[dom] = {"items": len(items), "bytes": sum(e["size"] for _, e in items),
               "digest": h.hexdigest()}
manifest = {
    "format": "aibo-memory/1",
    "backup_id": "5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "serial": "ERS1-0099", "model": "ERS-1000", "hardware_revision": "B",
    "firmware_version": "4.2.0", "schema_version": 3,
    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "domains": dj, "entries": entries,
}
mbytes = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
open(manifest_out, "wb").write(mbytes)

def add(t, name, data=b"", typ=tarfile.REGTYPE, link=""):
    ti = tarfile.TarInfo(name)
    ti.type = typ
    ti.mtime = mtime
    ti.mode = 0o644
    ti.linkname = link
    ti.size = len(data) if typ == tarfile.REGTYPE else 0
    t.addfile(ti, io.BytesIO(data) if typ == tarfile.REGTYPE else None)

with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    add(t, "MANIFEST.json", mbytes)
    for path, data in sorted(files.items()):
        add(t, "domains/" + path, data)
    if kind == "dotdot":
        add(t, "domains/photos/../../../x", b"escaped")
    elif kind == "absolute":
        add(t, "/etc/x", b"escaped")
    elif kind == "symlink":
        add(t, "domains/photos/link", typ=tarfile.SYMTYPE, link="/etc/passwd")
    elif kind == "hardlink":
        add(t, "domains/photos/hard", typ=tarfile.LNKTYPE, link="domains/photos/p1.jpg")
    elif kind == "duplicate":
        add(t, "domains/photos/p1.jpg", files["photos/p1.jpg"])
    elif kind == "undeclared":
        add(t, "domains/photos/extra.jpg", b"not in the manifest")
    elif kind == "huge":
        pass  # the manifest alone is hostile
