"""DKIM signing benchmark: Rail's dual signature against stock dkimpy; prints figures.

Run by hand (never by the test suite). The target (issue "DKIM for outbound mail") is
under 1 ms for both signatures of a 2 KB message on one core; stock dkimpy takes 7-8 ms
for the RSA one alone, because its RSA is pure Python.

    .venv/bin/python bench/dkim.py
    .venv/bin/python bench/dkim.py --iterations 5000 --size 2048

Rail's per-algorithm rows split :func:`rail.dkim.sign.sign` into what it does: the shared
canonicalization and body hash, then one private-key operation per algorithm (timed on a
header-sized input, as in ``sign``). Every signature is verified with dkimpy first, so
the figures are for output that is correct.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# This file has the dkimpy package's name, and running it puts bench/ first on sys.path.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from rail.dkim.canonical import relaxed_body, select_fields, split_message
from rail.dkim.records import txt_value
from rail.dkim.sign import DomainKeys, sign, signed_header_names

DOMAIN = "example.com"
HEADERS = [b"from", b"from", b"to", b"subject", b"date", b"message-id", b"mime-version"]
HEADERS += [b"content-type", b"content-transfer-encoding"]


def message(size: int) -> bytes:
    """A typical transactional message of about ``size`` bytes, CRLF line ends."""
    header = (
        b"From: Example App <noreply@example.com>\r\n"
        b"To: Some One <someone@example.org>\r\n"
        b"Subject: Your order 12345 has shipped\r\n"
        b"Date: Sat, 21 Nov 2026 04:07:13 +0000\r\n"
        b"Message-ID: <01JDB3ZK4T8F6M5N9Q2R7S1V0W@example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
    )
    line = b"Thank you for your order. It left our warehouse today and is on its way.\r\n"
    body = line * max(1, (size - len(header)) // len(line))
    return header + body


def timed(function: Callable[[], object], iterations: int) -> list[float]:
    """Milliseconds per call, one sample per call, after a short warm-up."""
    for _ in range(min(iterations, 20)):
        function()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def report(label: str, samples: list[float]) -> float:
    ordered = sorted(samples)
    median = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{label:<48} median {median:7.3f} ms   p99 {p99:7.3f} ms   (n={len(samples)})")
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="message size in bytes")
    parser.add_argument("--iterations", type=int, default=2000, help="samples for Rail")
    parser.add_argument("--stock-iterations", type=int, default=200, help="samples for dkimpy")
    args = parser.parse_args()

    data = message(args.size)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = DomainKeys(DOMAIN, "benche", "benchr", ed_key, rsa_key)
    records = {
        b"benche._domainkey.example.com.": txt_value(ed_key.public_key()).encode(),
        b"benchr._domainkey.example.com.": txt_value(rsa_key.public_key()).encode(),
    }

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    signed = sign(data, keys, time.time()) + data
    verifier = dkim.DKIM(signed)
    if not (verifier.verify(idx=0, dnsfunc=dns) and verifier.verify(idx=1, dnsfunc=dns)):
        print("Rail's signatures do not verify with dkimpy", file=sys.stderr)
        return 1

    rsa_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ed_seed = base64.b64encode(
        ed_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    )

    def stock(algorithm: bytes, key: bytes, selector: bytes) -> bytes:
        return bytes(
            dkim.sign(
                data,
                selector,
                DOMAIN.encode(),
                key,
                signature_algorithm=algorithm,
                include_headers=HEADERS,
                canonicalize=(b"relaxed", b"relaxed"),
            )
        )

    for algorithm, key, selector in (
        (b"rsa-sha256", rsa_pem, b"benchr"),
        (b"ed25519-sha256", ed_seed, b"benche"),
    ):
        if not dkim.verify(stock(algorithm, key, selector) + data, dnsfunc=dns):
            print(f"dkimpy's own {algorithm.decode()} does not verify", file=sys.stderr)
            return 1

    fields, _ = split_message(data)
    names = signed_header_names([name for name, _ in fields])
    header_input = b"".join(select_fields(fields, names)) + b"x" * 330  # + the signature field

    def canonicalize() -> None:
        parsed, raw_body = split_message(data)
        select_fields(parsed, signed_header_names([name for name, _ in parsed]))
        hashlib.sha256(relaxed_body(raw_body)).digest()

    print(f"message: {len(data)} bytes, {len(names)} header names signed, 2 signatures")
    print("Rail (rail.dkim.sign, OpenSSL through cryptography):")
    both = report("  both signatures (sign)", timed(lambda: sign(data, keys, 0.0), args.iterations))
    report("  canonicalization + body hash (shared)", timed(canonicalize, args.iterations))
    report(
        "  rsa-sha256 private-key operation",
        timed(
            lambda: rsa_key.sign(header_input, padding.PKCS1v15(), hashes.SHA256()),
            args.iterations,
        ),
    )
    report(
        "  ed25519-sha256 digest + private-key operation",
        timed(lambda: ed_key.sign(hashlib.sha256(header_input).digest()), args.iterations),
    )
    print("stock dkimpy (dkim.sign, relaxed/relaxed, same header list):")
    n = args.stock_iterations
    stock_rsa = report("  rsa-sha256", timed(lambda: stock(b"rsa-sha256", rsa_pem, b"benchr"), n))
    stock_ed = report(
        "  ed25519-sha256", timed(lambda: stock(b"ed25519-sha256", ed_seed, b"benche"), n)
    )
    print(f"  both (sum of medians)                          {stock_rsa + stock_ed:7.3f} ms")
    verdict = "meets" if both < 1.0 else "MISSES"
    print(f"Rail both: {both:.3f} ms median, {verdict} the 1 ms target;", end=" ")
    print(f"{(stock_rsa + stock_ed) / both:.1f}x faster than stock dkimpy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
