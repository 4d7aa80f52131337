#!/usr/bin/env python3
"""Regenerates fuzz/seeds/ from the SOPS test vectors in tests/vectors/sops.

    python3 fuzz/make_seeds.py [VECTORS_DIR]

decrypt_file: every *.enc.* vector, prefixed with its format byte
              (0 yaml, 1 json, 2 dotenv, 3 binary).
enc_value:    "AAD\\nVALUE" inputs: every distinct ENC[...] string of the vectors with
              an empty AAD (parser paths), the values and MAC of 06-tampered/base.enc.yaml
              with their real AADs (authenticating paths), and values of every type
              encrypted here under that file's data key (typed-plaintext paths, bad
              plaintexts, a 12-byte IV). Needs the `cryptography` package for the last.
yaml_store:   every *.plain.yaml vector.
"""
import base64
import hashlib
import os
import pathlib
import re
import shutil
import sys

HERE = pathlib.Path(__file__).resolve().parent
VECTORS = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "tests/vectors/sops"
SEEDS = HERE / "seeds"
KEY = bytes.fromhex("f3636ae2b0f6e46974f4dda2ef974a4bed392a48d856ec41662aaec7712fb839")
ENC = re.compile(rb"ENC\[AES256_GCM,[^\]\s\"]*\]")


def fmt_byte(path):
    if path.parent.name == "08-binary":
        return 3
    return {".yaml": 0, ".yml": 0, ".json": 1, ".env": 2}.get(path.suffix, 3)


def fresh(target):
    d = SEEDS / target
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def name_for(data):
    return hashlib.sha1(data).hexdigest()[:16]


def main():
    enc_files = sorted(VECTORS.rglob("*.enc.*"))

    d = fresh("decrypt_file")
    for p in enc_files:
        data = p.read_bytes()
        rel = str(p.relative_to(VECTORS)).replace("/", "_")
        (d / rel).write_bytes(bytes([fmt_byte(p)]) + data)

    d = fresh("enc_value")
    seen = set()
    for p in enc_files:
        for m in ENC.findall(p.read_bytes()):
            if m not in seen:
                seen.add(m)
                (d / ("any-" + name_for(m))).write_bytes(b"\n" + m)
    base = (VECTORS / "06-tampered/base.enc.yaml").read_text()
    real = []
    for line in base.splitlines():
        m = re.match(r"^(\w+): (ENC\[.*\])$", line)
        if m:
            real.append((m.group(1) + ":", m.group(2)))
        m = re.match(r"^    - (ENC\[.*\])$", line)
        if m:
            real.append(("hosts:", m.group(1)))
        m = re.match(r"^    mac: (ENC\[.*\])$", line)
        if m:
            lm = re.search(r'lastmodified: "([^"]+)"', base).group(1)
            real.append((lm, m.group(1)))
    for aad, value in real:
        data = f"{aad}\n{value}".encode()
        (d / ("base-" + name_for(data))).write_bytes(data)
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        print("cryptography not installed: typed enc_value seeds skipped", file=sys.stderr)
    else:
        gcm = AESGCM(KEY)
        b64 = lambda b: base64.b64encode(b).decode()
        typed = [
            ("str", b"hello"), ("str", b"\xff\xfe not utf-8"), ("str", b""),
            ("int", b"42"), ("int", b"-9223372036854775808"), ("int", b"12x"),
            ("float", b"3.25"), ("float", b"1e300"), ("float", b"NaN"), ("float", b"-Inf"), ("float", b"0x1p3"),
            ("bool", b"True"), ("bool", b"False"), ("bool", b"yes"),
            ("time", b"2026-11-26T06:33:05Z"), ("time", b"2001-12-14T21:59:43.1+05:30"), ("time", b"not a time"),
            ("comment", b" a comment"), ("comment", b"\xc3"),
            ("bytes", b"\x00\x01\x02"),
        ]
        for i, (ty, plain) in enumerate(typed):
            aad = f"k{i}:"
            iv = hashlib.sha256(f"iv{i}".encode()).digest()
            if i == 0:
                iv = iv[:12]  # the 12-byte IV path
            ct = gcm.encrypt(iv, plain, aad.encode())
            value = f"ENC[AES256_GCM,data:{b64(ct[:-16])},iv:{b64(iv)},tag:{b64(ct[-16:])},type:{ty}]"
            (d / f"typed-{i:02}-{ty}").write_bytes(f"{aad}\n{value}".encode())

    d = fresh("yaml_store")
    for p in sorted(VECTORS.rglob("*.plain.yaml")):
        (d / str(p.relative_to(VECTORS)).replace("/", "_")).write_bytes(p.read_bytes())


if __name__ == "__main__":
    main()
