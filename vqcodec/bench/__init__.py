"""Benchmarks against the classic codecs: images (JPEG, WebP, AVIF) and sound (Opus)."""
